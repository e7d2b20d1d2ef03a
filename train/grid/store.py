"""A grid-trained checkpoint's record of its grid: the GridSpec in its config ("grid") and the integer
weights of every synapse as int64 tensors (GRID_PREFIX + index + ".weight"/".bias"), the values the grid
forward computes with (forward.int_weights). load_model sets net.grid from them; export writes them."""
from __future__ import annotations

from dataclasses import asdict

GRID_PREFIX = "grid_int."
GRID_KEY = "grid"                 # the config entry holding the GridSpec


def grid_tensors(net) -> dict:
    """{name: int64 tensor} of the net's integer weights on its grid ({} without a grid)."""
    from saf.train.grid.forward import int_weights

    if getattr(net, "grid", None) is None:
        return {}
    out = {}
    for i, (W, B) in enumerate(int_weights(net, net.grid)):
        out[f"{GRID_PREFIX}{i}.weight"], out[f"{GRID_PREFIX}{i}.bias"] = W.contiguous(), B.contiguous()
    return out


def grid_config(net, config: dict) -> dict:
    """The config to store: with the net's GridSpec under GRID_KEY when it has one."""
    g = getattr(net, "grid", None)
    return config if g is None else dict(config, **{GRID_KEY: asdict(g)})


def split_grid(tensors: dict) -> tuple:
    """(model tensors, {name: int tensor} of the grid record) of a checkpoint's tensors."""
    model = {k: v for k, v in tensors.items() if not k.startswith(GRID_PREFIX)}
    return model, {k: v for k, v in tensors.items() if k.startswith(GRID_PREFIX)}


def stored_list(grid_t: dict, n: int, where: str) -> list:
    """[(W, B)] for n synapses from the grid tensors, or ValueError naming what is missing."""
    out = []
    for i in range(n):
        w, b = grid_t.get(f"{GRID_PREFIX}{i}.weight"), grid_t.get(f"{GRID_PREFIX}{i}.bias")
        if w is None or b is None:
            raise ValueError(f"{where}: grid-trained checkpoint lacks its integer weights of layer {i + 1}")
        out.append((w, b))
    return out
