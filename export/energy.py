"""Loihi energy/latency estimates for a bundle (`saf info`: activity upper bound; `saf run`: measured
activity). The per-operation figures and the model are in hw_targets/energy.py, each with its source."""
from __future__ import annotations

from saf.hw_targets.energy import FIGURES, LayerActivity, estimate
from saf.hw_targets.mapper import conv_synapse_count


def _pool_stage(l: dict):
    """(pool neurons, pool synapses) of a manifest layer's sum-pool stage ("in_pool" k > 1), else None:
    one neuron per pooled value, one ones-weight synapse per input value."""
    k = int(l.get("in_pool", 1))
    if k == 1:
        return None
    c, h, w = l["in_shape"]
    return c * (h // k) * (w // k), c * h * w


def _synapses(l: dict) -> int:
    """Expanded synapses of one manifest layer entry (conv: every in-bounds tap of every output); a
    sum-pooled layer's read its pooled map (its pool stage's synapses are _pool_stage's)."""
    ws = l["weight_shape"]
    k = int(l.get("in_pool", 1))
    c, *hw = l["in_shape"]
    in_shape = (c, hw[0] // k, hw[1] // k) if k > 1 else tuple(l["in_shape"])
    if l["kind"] == "conv":
        return conv_synapse_count(in_shape, ws[0], tuple(ws[2:]), int(l.get("stride", 1)),
                                  int(l.get("padding", 0)))
    n = 1
    for d in ws:
        n *= int(d)
    return n


def _neurons(l: dict) -> int:
    n = 1
    for d in l["out_shape"]:
        n *= int(d)
    return n


def _cores(manifest: dict) -> dict:
    return {r["name"]: int(r.get("cores") or 1) for r in manifest.get("resources", {}).get("layers", [])}


def latency_steps(manifest: dict) -> int:
    """T steps plus one step of delay per connection (each layer's input synapses) and one per sum-pool stage
    (deploy/lava/graph.py's offsets; docs/design.md#synapses-delays-and-streaming)."""
    return int(manifest["T"]) + len(manifest["layers"]) + sum(int(l.get("in_pool", 1)) > 1
                                                              for l in manifest["layers"])


def loihi_target(manifest: dict):
    """The Loihi target name to estimate for, or None (an ONNX bundle has no Loihi mapping)."""
    t = str(manifest.get("target", "")).lower()
    return t if t in FIGURES else None


def upper_bound_estimate(manifest: dict):
    """Estimate with every neuron (and every input value) firing at every step: an upper bound on
    the synaptic ops and spikes of any input. None for a non-Loihi bundle."""
    target = loihi_target(manifest)
    if target is None:
        return None
    T, cores = int(manifest["T"]), _cores(manifest)
    acts = []
    for i, l in enumerate(manifest["layers"]):
        spiking = l["kind"] != "readout"
        pool = _pool_stage(l)
        if pool:                    # the sum-pool stage: every input value, every count sent each step
            name = f"{l['name']}.pool"
            acts.append(LayerActivity(name, pool[0], float(pool[1]) * T, float(pool[0]) * T, cores.get(name, 1)))
        acts.append(LayerActivity(l["name"], _neurons(l), float(_synapses(l)) * T,
                                  float(_neurons(l)) * T if spiking else 0.0, cores.get(l["name"], 1)))
    e = estimate(target, acts, T, latency_steps(manifest))
    e["activity"] = "upper bound: every input value and every neuron active at every step"
    return e


def activity_estimate(manifest: dict, activity: list):
    """Estimate from measured per-inference activity [(layer, neurons, synops, spikes)] (saf run)."""
    target = loihi_target(manifest)
    if target is None:
        return None
    cores = _cores(manifest)
    acts = [LayerActivity(name, int(n), float(syn), float(sp), cores.get(name, 1)) for name, n, syn, sp in activity]
    e = estimate(target, acts, int(manifest["T"]), latency_steps(manifest))
    e["activity"] = "measured: mean synaptic ops and spikes per inference of this run"
    return e
