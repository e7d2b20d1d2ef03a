"""What `saf run` reports: accuracy, spikes and synaptic operations per inference, rates, speed."""
from __future__ import annotations

import numpy as np

from saf.export.ir import Graph

from saf.export.result import BackendResult


def _cover(n_in: int, n_out: int, k: int, stride: int, pad: int) -> np.ndarray:
    """For each input position, how many output positions' kernels cover it (one axis)."""
    o = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :]
    c = np.zeros(n_in, dtype=np.int64)
    v = o[(o >= 0) & (o < n_in)]
    np.add.at(c, v, 1)
    return c


def fan_out(layer) -> np.ndarray:
    """Synapses each input of `layer`'s weight drives (flattened; the pooled map when Layer.in_pool > 1)."""
    if layer.kind == "conv":
        co, _, kh, kw = layer.weight.shape
        c, h, w = layer.syn_in_shape
        _, ho, wo = layer.out_shape
        cov = np.outer(_cover(h, ho, kh, layer.stride, layer.padding), _cover(w, wo, kw, layer.stride, layer.padding))
        return np.broadcast_to(co * cov, (c, h, w)).reshape(-1)
    return np.full(int(np.prod(layer.syn_in_shape)), layer.weight.shape[0], dtype=np.int64)


def _spike_synops(layer, s: np.ndarray) -> tuple:
    """(synaptic ops of layer's weight, its sum-pool stage's activity or None) for the spikes s [N, T, n_in]
    into `layer`: each spike's fan-out, or, through a sum-pool stage, one ones-synapse op per spike
    into the stage and each non-zero count's fan-out (a graded spike) into the layer. The stage's
    activity is (name, neurons, synops, graded spikes sent), summed over the N samples."""
    if int(layer.in_pool) == 1:
        return float((s.sum(axis=1) * fan_out(layer)).sum()), None
    counts = layer.pool_input(s) != 0
    sent = counts.sum(axis=1)
    return float((sent * fan_out(layer)).sum()), (f"{layer.name}.pool", int(np.prod(layer.syn_in_shape)),
                                                 float(s.sum()), float(sent.sum()))


def run_stats(graph: Graph, r: BackendResult, xq: np.ndarray, labels: np.ndarray) -> dict:
    n, T = len(r.readout), graph.T
    layers = []
    # synaptic ops per IR layer (its input connection and the feedback edges into it)
    syn = np.zeros(len(graph.layers), dtype=np.float64)
    pools = []                 # sum-pool stages (name, neurons, synops, graded spikes), over all samples
    # graded input events: every non-zero input value of each step's frame (an image: every step)
    x = np.asarray(xq[:n])
    if x.ndim == len(graph.input_shape) + 1:                          # constant: the same frame T times
        syn[0] += float(((x.reshape(n, -1) != 0) * fan_out(graph.layers[0])).sum()) * T
    else:
        syn[0] += float(((graph.input_frames(x) != 0) * fan_out(graph.layers[0])).sum())
    for i, (l, s) in enumerate(zip(graph.spiking_layers, r.spikes)):
        per_neuron = s.sum(axis=1)                                   # [N, n_out]
        nxt = graph.layers[i + 1]
        ops, stage = _spike_synops(nxt, s)
        syn[i + 1] += ops
        if stage:
            pools.append(stage)
        for f in graph.feedback:
            if f.src == i:
                syn[f.dst] += float(per_neuron.sum()) * int(np.prod(f.weight.shape[:1]) *
                                                            (np.prod(f.weight.shape[2:]) if f.kind == "conv" else 1))
        layers.append({"layer": l.name, "neurons": l.n_out, "firing_rate": float(s.mean()),
                       "spikes_per_inference": float(s.sum()) / n, "synops_per_inference": syn[i] / n})
    ro = graph.readout
    activity = [(l["layer"], l["neurons"], l["synops_per_inference"], l["spikes_per_inference"]) for l in layers]
    activity.append((ro.name, ro.n_out, syn[-1] / n, 0.0))
    activity += [(name, nn, ops / n, sent / n) for name, nn, ops, sent in pools]
    secs = r.info.get("run_seconds") or r.seconds
    return {"backend": r.backend, "samples": n, "accuracy": float((r.predictions == labels[:n]).mean()),
            "spikes_per_inference": sum(l["spikes_per_inference"] for l in layers),
            "synops_per_inference": (float(syn.sum()) + sum(p[2] for p in pools)) / n, "layers": layers, "seconds": r.seconds,
            "steps_per_s": n * T / secs if secs else float("inf"), "ms_per_sample": 1000 * secs / n,
            "activity": activity}
