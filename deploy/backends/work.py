"""Work models: the multiply-adds per sample a network costs when every synapse is computed densely at
every step, and what the ONNX model executes (a backend's declared work, BackendSpec.work; `saf bench
infer` reports throughput against them, deploy/bench/peak.py)."""
from __future__ import annotations

import numpy as np

from saf.export.ir import Graph


def dense_equivalent_macs(graph: Graph) -> int:
    """Multiply-adds per sample of the network computed densely at every step: each layer's outputs
    times its fan-in (a conv's full kernel C_in*kh*kw), plus every feedback edge, times T."""
    per_step = sum(int(l.n_out) * int(l.fan_in) for l in graph.layers)
    for f in graph.feedback:
        dst = graph.spiking_layers[f.dst]
        fan = int(np.prod(f.weight.shape[1:]))
        per_step += int(dst.n_out) * fan
    return per_step * int(graph.T)


def onnx_macs(graph: Graph) -> int:
    """Multiply-adds per sample the ONNX model executes (export/onnx_model.py): every synapse densely at
    every step (a conv as im2col, padding taps included), except the first layer's current, computed
    once per sample when the input is constant over the T steps."""
    macs = dense_equivalent_macs(graph)
    if not graph.input_time_varying:
        first = graph.layers[0]
        macs -= (int(graph.T) - 1) * int(first.n_out) * int(first.fan_in)
    return macs
