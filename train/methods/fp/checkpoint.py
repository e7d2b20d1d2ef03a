"""FP checkpoints (--method fp): a saf checkpoint (safetensors, nothing unpickled) holding the
continuous-time weights in float64, with the neuron parameters and the latency code as metadata."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saf.train.checkpoint import FORMAT, CheckpointError, checkpoint_method, read_saf_file, resolve
from saf.core.files import atomic_write
from saf.train.methods.fp import FP_METHOD
from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode
from saf.train.readout import FIRST_SPIKE


def is_fp_checkpoint(path) -> bool:
    """A saf checkpoint (file, run directory or the file's bytes) whose config says method 'fp' (header only)."""
    return checkpoint_method(path) == FP_METHOD


def _tensor_name(l: int) -> str:
    return f"fp.w.{l}"


def save_fp_checkpoint(path, net: FPNet, config: dict) -> None:
    """Atomic write of a saf checkpoint holding an FP net (config must name method 'fp')."""
    from safetensors.numpy import save_file

    config = dict(config, method=FP_METHOD)
    tensors = {_tensor_name(l): np.ascontiguousarray(w, dtype=np.float64) for l, w in enumerate(net.weights)}
    spec = {"fp": {"sizes": net.sizes}}
    meta = {"format": FORMAT, "spec": json.dumps(spec), "config": json.dumps(config),
            "readout": FIRST_SPIKE.to_json(), "fp_params": json.dumps(asdict(net.params)),
            "fp_code": json.dumps(asdict(net.code))}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_fp_checkpoint(path, data=None) -> tuple:
    """(FPNet, config) from a checkpoint file or run directory (or from `data`, the file's bytes already
    read and hashed by the caller: `path` then only names it); CheckpointError (one line) otherwise."""
    from safetensors.numpy import load as load_bytes

    p = resolve(path) if data is None else Path(path)
    meta, tensors = read_saf_file(p, load_bytes, data)
    try:
        config = json.loads(meta["config"])
        if config.get("method") != FP_METHOD:
            raise CheckpointError(f"{p}: not an FP checkpoint (method {config.get('method')!r})")
        params = FPParams(**json.loads(meta["fp_params"])).check()
        c = json.loads(meta["fp_code"])
        code = LatencyCode(tuple(c["lo"]), tuple(c["hi"]), c["t_early"], c["t_late"],
                           tuple(c.get("bias_times", ()))).check()
        sizes = json.loads(meta["spec"])["fp"]["sizes"]
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{p}: FP metadata unreadable ({e})") from None
    names = [_tensor_name(l) for l in range(len(tensors))]
    if sorted(tensors) != sorted(names) or len(names) != len(sizes) - 1:
        raise CheckpointError(f"{p}: FP weights {sorted(tensors)} do not match the layer sizes {sizes}")
    weights = [tensors[k] for k in names]
    for l, w in enumerate(weights):
        if w.dtype != np.float64 or w.shape != (sizes[l + 1], sizes[l]):
            raise CheckpointError(f"{p}: {names[l]} is {w.dtype} {list(w.shape)}, the sizes need float64 "
                                  f"{[sizes[l + 1], sizes[l]]}")
        if not np.isfinite(w).all():
            raise CheckpointError(f"{p}: tensor {names[l]} contains NaN or inf")
    try:
        net = FPNet(params, weights, code)
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from None
    return net, config
