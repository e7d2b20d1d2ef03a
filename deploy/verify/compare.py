"""Pure comparison of two backends' outputs: every layer's spike train at every time step, and the
readout sums. Nothing here runs a backend."""
from __future__ import annotations

import hashlib

import numpy as np

from saf.export.result import BackendResult


def first_mismatch(a: list, b: list, n: int):
    """(sample, layer index, t, neuron) of the first difference, ordered by sample, then time step,
    then layer, then neuron; None if the spike trains agree."""
    best = None
    for li, (x, y) in enumerate(zip(a, b)):
        d = x[:n] != y[:n]
        if not d.any():
            continue
        s = int(np.argmax(d.any(axis=(1, 2))))
        t = int(np.argmax(d[s].any(axis=1)))
        k = int(np.argmax(d[s, t]))
        cand = (s, t, li, k)
        if best is None or cand < best:
            best = cand
    if best is None:
        return None
    s, t, li, k = best
    return s, li, t, k


def _shape(x) -> str:
    return "x".join(str(d) for d in np.shape(x)[1:])


def shape_error(a: BackendResult, b: BackendResult, layer_names: list) -> str:
    """Why two results cannot be compared on every layer ("" when they can): each must hold one spike
    array per spiking layer, the arrays of a layer [N, T, n] equal past the sample axis, the readouts
    [N, classes] likewise, and as many samples in spikes as in readouts."""
    for r in (a, b):
        if r.spikes is None or len(r.spikes) != len(layer_names):
            got = "no" if r.spikes is None else len(r.spikes)
            return f"{r.backend} returned {got} spike layers, the network has {len(layer_names)}"
        for name, x in zip(layer_names, r.spikes):
            if np.ndim(x) != 3 or len(x) != len(r.readout):
                return (f"{r.backend}: layer {name} spikes have shape {list(np.shape(x))}, expected "
                        f"[{len(r.readout)} samples, T, neurons]")
        if np.ndim(r.readout) != 2:
            return f"{r.backend}: readout has shape {list(np.shape(r.readout))}, expected [samples, classes]"
    for name, x, y in zip(layer_names, a.spikes, b.spikes):
        if np.shape(x)[1:] != np.shape(y)[1:]:
            return f"layer {name}: spike arrays of shape {_shape(x)} ({a.backend}) and {_shape(y)} ({b.backend})"
    if np.shape(a.readout)[1:] != np.shape(b.readout)[1:]:
        return f"readouts of shape {_shape(a.readout)} ({a.backend}) and {_shape(b.readout)} ({b.backend})"
    return ""


def compare_pair(a: BackendResult, b: BackendResult, layer_names: list) -> dict:
    """Mismatch counts per layer over the samples both ran, readout mismatches, first mismatch. Results
    of different layer counts or shapes are not compared: the report carries "shape_error" instead."""
    n = min(len(a.readout), len(b.readout))
    why = shape_error(a, b, layer_names)
    if why:
        return {"a": a.backend, "b": b.backend, "samples": n, "layers": [], "spike_mismatches": 0,
                "spikes_total": 0, "readout_mismatches": 0, "readout_total": 0, "prediction_mismatches": 0,
                "first": None, "mismatch_rate": 0.0, "readout_mismatch_rate": 0.0, "shape_error": why}
    layers = []
    for name, x, y in zip(layer_names, a.spikes, b.spikes):
        layers.append({"layer": name, "mismatches": int((x[:n] != y[:n]).sum()), "total": int(x[:n].size)})
    ro = a.readout[:n] != b.readout[:n]
    first = first_mismatch(a.spikes, b.spikes, n)
    rep = {"a": a.backend, "b": b.backend, "samples": n, "layers": layers,
           "spike_mismatches": sum(l["mismatches"] for l in layers), "spikes_total": sum(l["total"] for l in layers),
           "readout_mismatches": int(ro.sum()), "readout_total": int(ro.size),
           "prediction_mismatches": int((a.predictions[:n] != b.predictions[:n]).sum()), "first": None}
    if first is not None:
        s, li, t, k = first
        rep["first"] = {"sample": s, "layer": layer_names[li], "layer_index": li, "t": t + 1, "neuron": k,
                        "spike_a": bool(a.spikes[li][s, t, k]), "spike_b": bool(b.spikes[li][s, t, k])}
    elif ro.any():
        s = int(np.argmax(ro.any(axis=1)))
        rep["first"] = {"sample": s, "layer": "readout", "layer_index": len(layer_names), "t": None,
                        "neuron": int(np.argmax(ro[s])), "readout_a": int(a.readout[s, np.argmax(ro[s])]),
                        "readout_b": int(b.readout[s, np.argmax(ro[s])])}
    rep["mismatch_rate"] = rep["spike_mismatches"] / max(1, rep["spikes_total"])
    rep["readout_mismatch_rate"] = rep["readout_mismatches"] / max(1, rep["readout_total"])
    return rep


def spike_hashes(r: BackendResult) -> list:
    """Per sample: sha256 (32 hex) of every spike it produced: each layer's [T, neurons] bit array in layer
    order, with the array's shape, so which neuron fired at which step of which layer is pinned (two
    neurons swapping spikes change the hash; per-step counts would not)."""
    out = []
    for i in range(len(r.readout)):
        h = hashlib.sha256()
        for s in r.spikes:
            x = np.ascontiguousarray(s[i], dtype=bool)
            h.update(np.asarray(x.shape, np.int64).tobytes())
            h.update(np.packbits(x, axis=None).tobytes())
        out.append(h.hexdigest()[:32])
    return out


def sample_hashes(x: np.ndarray) -> list:
    """Per sample: sha256 (32 hex) of its quantized input (int64, with its shape)."""
    out = []
    for row in np.asarray(x, np.int64):
        h = hashlib.sha256(np.asarray(row.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(row).tobytes())
        out.append(h.hexdigest()[:32])
    return out


def firing_rates(r: BackendResult) -> list:
    """Spikes per neuron per time step, per layer."""
    return [float(s.mean()) if s.size else 0.0 for s in r.spikes]


def accuracy(r: BackendResult, labels: np.ndarray) -> float:
    n = len(r.readout)
    return float((r.predictions == labels[:n]).mean()) if n else float("nan")


def compare_potentials(a: list, b: list, layer_names: list) -> dict:
    """Membrane potentials V[t] of two backends that both report them: mismatches per layer over the
    samples both recorded, and the first one (ordered like first_mismatch) with each side's value."""
    if len(a) != len(layer_names) or len(b) != len(layer_names) or \
            any(np.shape(x)[1:] != np.shape(y)[1:] for x, y in zip(a, b)):
        return {"samples": 0, "layers": [], "mismatches": 0, "first": None,
                "shape_error": f"potentials of {len(a)} and {len(b)} layers, shapes "
                               f"{[_shape(x) for x in a]} and {[_shape(y) for y in b]}"}
    n = min(len(a[0]), len(b[0])) if a and b else 0
    layers, best = [], None
    for li, (name, x, y) in enumerate(zip(layer_names, a, b)):
        d = x[:n] != y[:n]
        layers.append({"layer": name, "mismatches": int(d.sum()), "total": int(d.size)})
        if d.any():
            s = int(np.argmax(d.any(axis=(1, 2))))
            t = int(np.argmax(d[s].any(axis=1)))
            cand = (s, t, li, int(np.argmax(d[s, t])))
            best = cand if best is None or cand < best else best
    rep = {"samples": n, "layers": layers, "mismatches": sum(l["mismatches"] for l in layers), "first": None}
    if best is not None:
        s, t, li, k = best
        rep["first"] = {"sample": s, "layer": layer_names[li], "layer_index": li, "t": t + 1, "neuron": k,
                        "potential_a": int(a[li][s, t, k]), "potential_b": int(b[li][s, t, k])}
    return rep
