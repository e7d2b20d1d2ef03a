"""Sum-pool form of folded AvgPool layers: the same integers with k^2 fewer weights (export/ir.py).

fold.py folds AvgPool(k) (and global average pooling) into the next conv/dense weight W' = W/k^2
replicated over every k x k block of the input; quantize rounds W' * s, so the integer weight is
still constant over each block. Then, for binary (or any integer) input s,

    W'_int s = sum_{c,i,j} W_p[c,i,j] * sum_{a,b<k} s[c, ik+a, jk+b] = W_p sum_pool_k(s)

with W_p the block's value: the pooled layer (Layer.in_pool = k) computes the folded layer's current
bit for bit (an integer identity, no rounding). For a conv the fold also scaled stride and padding by
k: conv(x, W', s k, p k) == conv(sum_pool_k(x), W_p, s, p) when H, W, the kernel, the stride and the
padding are multiples of k. `pool_layer` converts only when every one of these holds and the integer
weight really is block-constant (else it raises: it never approximates); `unpool_layer` is the exact
inverse (the folded form, kept available for every target and for Lava's stock models).

On Loihi 2 the pool is a stage of sum neurons (ones-weight synapses, graded spikes carrying the count
0..k^2 into the next layer's synapses, one more step of delay; hw_targets/mapper.py costs it). Loihi 1
has binary spikes only, so its bundles keep the folded form. `choose_pools` picks, per layer, the form
the target runs cheaper: on Loihi the mapper's core count (then synaptic memory), on ONNX the
multiply-adds (the pooled form always does fewer).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np

from saf.export.ir import Graph, Layer
from saf.core.errors import SafError

MODES = ("auto", "on", "off")


class SumPoolError(SafError, ValueError):
    """A layer cannot be written in sum-pool form exactly (the message names it and why)."""


def _blocks_equal(w: np.ndarray, k: int, axes: tuple) -> bool:
    """True if w is constant over k-blocks along both `axes` (each axis length a multiple of k)."""
    a, b = axes
    base = np.take(np.take(w, np.arange(0, w.shape[a], k), axis=a), np.arange(0, w.shape[b], k), axis=b)
    rep = np.repeat(np.repeat(base, k, axis=a), k, axis=b)
    return bool(np.array_equal(rep, w))


def pool_problem(layer: Layer, k: int):
    """Why `layer` (folded) cannot be written as a k x k sum pool plus its weight, or None."""
    k = int(k)
    if k < 2:
        return f"layer {layer.name}: pool size {k} < 2"
    if int(layer.in_pool) != 1:
        return f"layer {layer.name}: already sum-pooled ({layer.in_pool}x{layer.in_pool})"
    if len(layer.in_shape) != 3:
        return f"layer {layer.name}: input {tuple(layer.in_shape)} is not a (C, H, W) map"
    c, h, w = layer.in_shape
    if h % k or w % k:
        return f"layer {layer.name}: a {h}x{w} input is not a multiple of the pool {k}"
    W = np.asarray(layer.weight)
    if layer.kind == "conv":
        kh, kw = W.shape[2:]
        if kh % k or kw % k or layer.stride % k or layer.padding % k:
            return (f"layer {layer.name}: kernel {kh}x{kw}, stride {layer.stride}, padding {layer.padding} "
                    f"are not all multiples of {k}")
        if not _blocks_equal(W, k, (2, 3)):
            return f"layer {layer.name}: the kernel is not constant over {k}x{k} blocks"
        return None
    if W.shape[1] != c * h * w:
        return f"layer {layer.name}: weight {W.shape} does not read a {c}x{h}x{w} input"
    if not _blocks_equal(W.reshape(W.shape[0], c, h, w), k, (2, 3)):
        return f"layer {layer.name}: the weight is not constant over {k}x{k} input blocks"
    return None


def pool_layer(layer: Layer, k: int) -> Layer:
    """The sum-pool form of a folded layer (exact; raises SumPoolError where it would not be)."""
    why = pool_problem(layer, k)
    if why:
        raise SumPoolError(why)
    W = np.asarray(layer.weight, dtype=np.int64)
    if layer.kind == "conv":
        return replace(layer, weight=np.ascontiguousarray(W[:, :, ::k, ::k]), stride=layer.stride // k,
                       padding=layer.padding // k, in_pool=int(k))
    c, h, w = layer.in_shape
    wp = W.reshape(W.shape[0], c, h, w)[:, :, ::k, ::k].reshape(W.shape[0], -1)
    return replace(layer, weight=np.ascontiguousarray(wp), in_pool=int(k))


def unpool_layer(layer: Layer) -> Layer:
    """The folded form of a sum-pooled layer: its weight replicated over every k x k block."""
    k = int(layer.in_pool)
    if k == 1:
        return layer
    W = np.asarray(layer.weight, dtype=np.int64)
    if layer.kind == "conv":
        w2 = np.repeat(np.repeat(W, k, axis=2), k, axis=3)
        return replace(layer, weight=w2, stride=layer.stride * k, padding=layer.padding * k, in_pool=1)
    c, hp, wp = layer.syn_in_shape
    w2 = np.repeat(np.repeat(W.reshape(W.shape[0], c, hp, wp), k, axis=2), k, axis=3)
    return replace(layer, weight=w2.reshape(W.shape[0], -1), in_pool=1)


def with_pools(graph: Graph, pools: dict) -> Graph:
    """A copy of `graph` with layer `name` sum-pooled k x k for each name -> k in `pools`; every other
    layer as it was. Raises SumPoolError (naming the layer) where the pooled form would not be exact."""
    g = copy.copy(graph)
    g.layers = [pool_layer(l, pools[l.name]) if pools.get(l.name, 1) > 1 else l for l in graph.layers]
    return g


def unpool_graph(graph: Graph) -> Graph:
    """A copy of `graph` in the folded form (every sum pool folded back into its layer's weight)."""
    if not any(int(l.in_pool) > 1 for l in graph.layers):
        return graph
    g = copy.copy(graph)
    g.layers = [unpool_layer(l) for l in graph.layers]
    return g


def macs(graph: Graph) -> int:
    """Dense-equivalent multiply-adds of one step of every layer's synapse (plus the pool's adds)."""
    from saf.hw_targets.mapper import conv_synapse_count

    total = 0
    for l in graph.layers:
        if l.kind == "conv":
            total += conv_synapse_count(l.syn_in_shape, l.weight.shape[0], l.weight.shape[2:], l.stride, l.padding)
        else:
            total += int(l.weight.size)
        if int(l.in_pool) > 1:
            total += l.n_in                 # one add per input value
    return total


@dataclass
class PoolChoice:
    """What `choose_pools` decided: per candidate layer, the form chosen and the two costs."""
    mode: str
    target: str
    candidates: dict                           # layer name -> k (folded AvgPool in front of it)
    pooled: dict = field(default_factory=dict)  # layer name -> k actually sum-pooled
    reasons: dict = field(default_factory=dict)  # layer name -> one line why it stays folded
    costs: dict = field(default_factory=dict)  # "folded" / "chosen": cost of the two forms
    folded_report: object = None               # Loihi: the folded form's ResourceReport (not serialized)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "target": self.target, "candidates": dict(self.candidates),
                "pooled": dict(self.pooled), "reasons": dict(self.reasons), "costs": dict(self.costs)}


def _loihi_costs(graph: Graph, ok: dict, target):
    """cost(pools) -> (does not fit, cores, synaptic memory) on the Loihi target, for any subset of
    the candidates `ok`: every layer is described once folded and once pooled (describe() is the
    slow part), and the mapper runs on the mixed description."""
    import dataclasses

    from saf.hw_targets import map_network

    from saf.export.resources import describe

    folded, pooled = describe(graph), describe(with_pools(graph, ok))

    def groups(net):
        out = {}
        for d in net.layers:
            out.setdefault(d.name[:-len(".pool")] if d.kind == "sumpool" else d.name, []).append(d)
        return out

    gf, gp = groups(folded), groups(pooled)

    def cost(pools: dict) -> tuple:
        descs = [d for l in graph.layers for d in (gp if l.name in pools else gf)[l.name]]
        rep = map_network(dataclasses.replace(folded, layers=descs), target)
        if not pools:
            cost.folded_report = rep
        return (0 if rep.fits else 1, rep.cores_used, sum(r.memory_bytes_per_core * r.cores for r in rep.layers))

    return cost


def choose_pools(graph: Graph, candidates: dict, target, mode: str = "auto") -> tuple:
    """(graph, PoolChoice): `graph` (folded) with the candidate layers (name -> k) sum-pooled where
    `mode` says so: "off" none, "on" every candidate (an error on a target without graded spikes),
    "auto" per layer, greedily in order, where the target runs it cheaper (Loihi: fewer cores, then
    less synaptic memory; ONNX: fewer multiply-adds). A candidate whose integer weight is not
    block-constant stays folded (its reason is recorded)."""
    if mode not in MODES:
        raise SumPoolError(f"--sum-pool must be one of {', '.join(MODES)}, got {mode!r}")
    choice = PoolChoice(mode, target.name, {n: int(k) for n, k in candidates.items() if int(k) > 1})
    by_name = {l.name: l for l in graph.layers}
    ok = {}
    for name, k in choice.candidates.items():
        why = pool_problem(by_name[name], k)
        if by_name[name] is graph.layers[0]:       # its input is the host's graded x_q, not spikes
            why = f"layer {name}: the first layer's AvgPool over the input stays folded"
        if why:
            choice.reasons[name] = why
        else:
            ok[name] = k
    if mode == "off" or not ok:
        for n in ok:
            choice.reasons[n] = "--sum-pool off"
        return graph, choice
    if target.kind == "loihi" and not target.graded_spikes:
        if mode == "on":
            raise SumPoolError(f"--sum-pool on: {target.name} has binary spikes only; a sum-pool stage sends "
                               f"counts 0..k^2 as graded spikes (use --sum-pool off or auto)")
        for n in ok:
            choice.reasons[n] = f"{target.name} has no graded spikes: AvgPool stays folded"
        return graph, choice
    if mode == "on":
        choice.pooled = dict(ok)
        return with_pools(graph, ok), choice
    cost = _loihi_costs(graph, ok, target) if target.kind == "loihi" else \
        (lambda pools: (macs(with_pools(graph, pools)),))
    best = cost({})
    choice.costs["folded"] = list(best)
    choice.folded_report = getattr(cost, "folded_report", None)
    pooled = {}
    for name, k in ok.items():
        trial = dict(pooled, **{name: k})
        c = cost(trial)
        if c < best:
            pooled, best = trial, c
        else:
            choice.reasons[name] = f"the sum-pool form costs {list(c)}, the folded one {list(best)}"
    choice.pooled = pooled
    choice.costs["chosen"] = list(best)
    return with_pools(graph, pooled), choice
