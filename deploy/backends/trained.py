"""The `trained` backend (issue 28): a grid-trained checkpoint's own torch forward (train/grid/forward.py, the
code path `saf train` and `saf eval` run), on CPU, from the bundle's source.safetensors. Its spikes, potentials
(V[t] after saturation, before reset) and integer readout R[T] are compared with every other integer backend
spike for spike: the pair that reaches the trained model itself. Its pairs must agree bit for bit (covered):
every value it computes is an integer held exactly (float64 below 2^53, the decay in int64), and export's
on_grid certificate row proves the bundle's integers are the ones this forward rounds the weights to."""
from __future__ import annotations

import time

import numpy as np

from saf.export.bundle.store import SOURCE_FILE
from saf.export.ir import Graph
from saf.export.result import BackendResult

from saf.deploy.backends.spec import BackendError


def trained_refuses(graph: Graph) -> str:
    """Only a bundle exported from a grid-trained run has a trained integer forward."""
    return "" if graph.meta.get("trained_on_grid") else (
        "the bundle was not exported from a run trained with --deploy-target (its trained model is float: "
        "compare saf-float for accuracy)")


def run_trained(bundle, g, xq, record_spikes, record_potentials, progress, batch: int = 256, **opts) -> BackendResult:
    import torch

    from saf.train.checkpoint import load_model
    from saf.train.grid.forward import grid_run_quantized

    t0 = time.perf_counter()
    data = bundle.file_bytes(SOURCE_FILE, BackendError)
    net, _, _ = load_model(f"{bundle.path}/{SOURCE_FILE}", data=data)
    if net.grid is None:
        raise BackendError(f"{bundle.path}/{SOURCE_FILE}: not a grid-trained checkpoint")
    if np.asarray(xq).ndim != len(g.input_shape) + 1:
        raise BackendError("trained: the grid forward takes constant (image) inputs [N, *input_shape]")
    xs = torch.from_numpy(np.asarray(xq, dtype=np.float64))
    n, sp = len(xs), g.spiking_layers
    readout = np.zeros((n, g.readout.n_out), dtype=np.int64)
    spikes = [np.zeros((n, g.T, l.n_out), dtype=bool) for l in sp] if record_spikes else None
    pots = [np.zeros((n, g.T, l.n_out), dtype=np.int64) for l in sp] if record_potentials else None
    for i in range(0, n, batch):
        R, recs = grid_run_quantized(net, net.grid, xs[i:i + batch], record_spikes or record_potentials)
        readout[i:i + batch] = R.numpy().astype(np.int64)
        for t, rec in enumerate(recs):
            for l in range(len(sp)):
                if spikes is not None:
                    spikes[l][i:i + batch, t] = rec.spikes[l].flatten(1).numpy() > 0.5
                if pots is not None:
                    pots[l][i:i + batch, t] = rec.potentials[l].flatten(1).numpy().astype(np.int64)
    return BackendResult(backend="trained", readout=readout, spikes=spikes, potentials=pots,
                         seconds=time.perf_counter() - t0, info={"dtype": "float64/int64 (grid forward, CPU)"})
