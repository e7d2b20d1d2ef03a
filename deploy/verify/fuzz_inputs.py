"""Inputs beyond the dataset for `saf verify --fuzz N --seed S`, and per-layer state statistics.

Classes (every value inside the admissible input range [lo, hi] of the bundle's input quantization):
  tie      constructed: a hill-climb on the emulator until some neuron of the layer sits exactly on
           its threshold, V == TH << F (where `>=` and `>` disagree), per spiking layer
  bound    constructed: a hill-climb maximizing max |V| of the layer (towards the 24-bit bound)
  uniform  every value uniform in [lo, hi]
  sparse   mostly zero, a few random values
  extreme  all lo, all hi, random {lo, hi} masks of several densities, checkerboards
Constructed inputs come first (two per layer and class), then the others in turn, so a backend
run on a prefix (Lava) sees every class. A graph trained on time-varying input gets trains
[T, *input_shape] (every value drawn per step; the bound seeds repeat the extreme frame every step,
the train that maximizes the first layer's |V|); hill-climbing mutates single (step, input) entries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from saf.export.ir import STATE_MAX, Graph

from saf.deploy.backends.emulator import EmulatorPlan, emulate

CLASSES = ("tie", "bound", "uniform", "sparse", "extreme")
PER_LAYER = 2                           # constructed inputs kept per layer and class
NEAR_BOUND = 1 << 22                    # |V| in the upper half of the 24-bit range counts as near the bound
POP, CHILDREN, ROUNDS = 8, 16, 25       # hill-climb: parents kept, children per parent, rounds at most


@dataclass
class FuzzSet:
    xq: np.ndarray
    classes: list                        # one class name per sample
    search: list = field(default_factory=list)   # per layer: what the constructions reached


def input_range(g: Graph) -> tuple:
    """(lo, hi) of x_q, as the backends accept it (onnx_runner._check_input)."""
    return (-g.input_max, g.input_max - 1) if g.input_signed else (0, g.input_max)


def sample_shape(g: Graph) -> tuple:
    """One fuzz input: an image [*input_shape], or a train [T, *input_shape] for a time-varying graph."""
    return (int(g.T), *g.input_shape) if g.input_time_varying else tuple(g.input_shape)


def min_fuzz(g: Graph) -> int:
    return 2 * PER_LAYER * len(g.spiking_layers) + 3


def _random(kind: str, g: Graph, n: int, rng) -> np.ndarray:
    lo, hi = input_range(g)
    shape = (n, *sample_shape(g))
    if kind == "uniform":
        return rng.integers(lo, hi + 1, size=shape)
    zero = max(lo, 0)
    if kind == "sparse":
        x = np.full(shape, zero, dtype=np.int64)
        for i in range(n):
            m = rng.random(shape[1:]) < rng.uniform(0.02, 0.2)
            x[i][m] = rng.integers(lo, hi + 1, size=int(m.sum()))
        return x
    x = np.empty(shape, dtype=np.int64)                      # extreme
    for i in range(n):
        v = i % 5
        if v == 0:
            x[i] = hi if (i // 5) % 2 == 0 else lo
        elif v == 1:
            idx = np.indices(shape[1:]).sum(0) % 2
            x[i] = np.where(idx == (i // 5) % 2, hi, lo)
        else:
            x[i] = np.where(rng.random(shape[1:]) < (0.1, 0.5, 0.9)[v - 2], hi, lo)
    return x


def first_layer_extremes(g: Graph) -> np.ndarray:
    """Two inputs giving the first layer's most extreme currents exactly: for the neuron (an interior
    position of the conv channel) with the largest |W x + B| over the input range, x at hi where the
    weight's sign pushes the current outwards and at lo elsewhere, for both signs."""
    lo, hi = input_range(g)
    lay = g.layers[0]
    w = np.asarray(lay.weight, dtype=np.int64)
    b = np.asarray(lay.bias, dtype=np.int64)
    rows = w.reshape(len(w), -1)
    big, small = np.maximum(rows * lo, rows * hi).sum(1) + b, np.minimum(rows * lo, rows * hi).sum(1) + b
    out = []
    for sign, ext in ((1, big), (-1, small)):
        j = int(np.argmax(sign * ext))
        patch = np.where(sign * w[j] > 0, hi, lo)        # hi where the weight pushes the current outwards
        x = np.full(g.input_shape, lo, dtype=np.int64)
        if lay.kind == "conv":
            _, kh, kw = w.shape[1:]
            r0 = -(-int(lay.padding) // int(lay.stride)) * int(lay.stride) - int(lay.padding)
            if r0 + kh > g.input_shape[1] or r0 + kw > g.input_shape[2]:
                continue                                 # no output position sees a full kernel
            x[:, r0:r0 + kh, r0:r0 + kw] = patch
        else:
            x = patch.reshape(g.input_shape)
        out.append(x)
    x = np.stack(out) if out else np.zeros((0, *g.input_shape), dtype=np.int64)
    return np.repeat(x[:, None], g.T, axis=1) if g.input_time_varying else x


def _potentials(g: Graph, x: np.ndarray, plan: EmulatorPlan, layer: int) -> np.ndarray:
    return emulate(g, x, record_spikes=False, record_potentials=True, plan=plan).potentials[layer]


def _score(kind: str, v: np.ndarray, th: int) -> np.ndarray:
    """Higher is better: -(closest |V - TH<<F|) for ties, max |V| for the bound."""
    v = v.reshape(len(v), -1)
    return -np.abs(v - th).min(axis=1) if kind == "tie" else np.abs(v).max(axis=1)


def _mutate(x: np.ndarray, rng, lo: int, hi: int) -> np.ndarray:
    flat = x.reshape(len(x), -1).copy()
    for row in flat:
        k = int(rng.integers(1, 5))
        idx = rng.integers(0, row.size, size=k)
        how = rng.integers(0, 4, size=k)
        step = rng.integers(1, 4, size=k) * rng.choice((-1, 1), size=k)
        row[idx] = np.where(how == 0, lo, np.where(how == 1, hi, np.where(
            how == 2, rng.integers(lo, hi + 1, size=k), np.clip(row[idx] + step, lo, hi))))
    return flat.reshape(x.shape)


def hill_climb(g: Graph, plan: EmulatorPlan, seeds: np.ndarray, kind: str, layer: int, rng,
               rounds: int = ROUNDS) -> tuple:
    """(population sorted best first, scores) after up to `rounds` rounds of elitist mutation."""
    lo, hi = input_range(g)
    lay = g.spiking_layers[layer]
    th = int(lay.threshold) << int(lay.frac_bits)
    pop = seeds
    sc = _score(kind, _potentials(g, pop, plan, layer), th)
    for _ in range(rounds):
        if kind == "tie" and (sc == 0).sum() >= PER_LAYER:
            break
        kids = _mutate(np.repeat(pop, CHILDREN, axis=0), rng, lo, hi)
        ks = _score(kind, _potentials(g, kids, plan, layer), th)
        allx, alls = np.concatenate([pop, kids]), np.concatenate([sc, ks])
        _, first = np.unique(allx.reshape(len(allx), -1), axis=0, return_index=True)
        keep = first[np.argsort(-alls[first], kind="stable")][:POP]
        pop, sc = allx[keep], alls[keep]
    order = np.argsort(-sc, kind="stable")
    return pop[order], sc[order]


def make_fuzz_inputs(g: Graph, n: int, seed: int) -> FuzzSet:
    """n inputs (n >= min_fuzz(g)): constructed tie and bound inputs per spiking layer, then uniform,
    sparse and extreme ones in turn."""
    if n < min_fuzz(g):
        raise ValueError(f"need at least {min_fuzz(g)} fuzz inputs for {len(g.spiking_layers)} spiking layers")
    rng = np.random.default_rng(seed)
    plan = EmulatorPlan(g, 0)
    pool = np.concatenate([_random(k, g, 3 * POP, rng) for k in ("uniform", "sparse", "extreme")])
    xs, classes, search = [], [], []
    for li, lay in enumerate(g.spiking_layers):
        th = int(lay.threshold) << int(lay.frac_bits)
        entry = {"layer": lay.name}
        for kind in ("tie", "bound"):
            cand = np.concatenate([pool, first_layer_extremes(g)]) if li == 0 and kind == "bound" else pool
            seeds = cand[np.argsort(-_score(kind, _potentials(g, cand, plan, li), th), kind="stable")[:POP]]
            pop, sc = hill_climb(g, plan, seeds, kind, li, rng)
            xs.append(pop[:PER_LAYER])
            classes += [kind] * PER_LAYER
            entry[kind] = int(-sc[0]) if kind == "tie" else int(sc[0])
        entry["closest_tie_gap"] = entry.pop("tie")           # min |V - TH<<F| the search reached
        entry["tie_found"] = entry["closest_tie_gap"] == 0
        entry["max_abs_v"] = entry.pop("bound")
        search.append(entry)
    rest = n - len(classes)
    kinds = [("uniform", "sparse", "extreme")[i % 3] for i in range(rest)]
    parts = {k: iter(_random(k, g, kinds.count(k), rng)) for k in ("uniform", "sparse", "extreme")}
    xs.append(np.stack([next(parts[k]) for k in kinds]) if rest else np.zeros((0, *sample_shape(g)), np.int64))
    classes += kinds
    return FuzzSet(np.concatenate(xs).astype(np.int64), classes, search)


def layer_stats(g: Graph, xq: np.ndarray, classes=None, batch: int = 256) -> list:
    """Per spiking layer, from the emulator's potentials: ties (V == TH<<F), states near the bound
    (|V| >= NEAR_BOUND), max |V| and its fraction of 2^23 - 1; ties per input class when given."""
    plan = EmulatorPlan(g, 0)
    sp = g.spiking_layers
    out = [{"layer": l.name, "ties": 0, "near_bound": 0, "max_abs_v": 0, "ties_by_class": {}} for l in sp]
    cls = np.asarray(classes) if classes is not None else None
    for s in range(0, len(xq), batch):
        pots = emulate(g, xq[s:s + batch], record_spikes=False, record_potentials=True, plan=plan).potentials
        for l, v, o in zip(sp, pots, out):
            tie = (v == (int(l.threshold) << int(l.frac_bits))).reshape(len(v), -1).sum(1)
            o["ties"] += int(tie.sum())
            o["near_bound"] += int((np.abs(v) >= NEAR_BOUND).sum())
            o["max_abs_v"] = max(o["max_abs_v"], int(np.abs(v).max(initial=0)))
            if cls is not None:
                for c in np.unique(cls[s:s + batch]):
                    o["ties_by_class"][str(c)] = o["ties_by_class"].get(str(c), 0) + \
                        int(tie[cls[s:s + batch] == c].sum())
    for o in out:
        o["fraction_of_bound"] = o["max_abs_v"] / STATE_MAX
    return out
