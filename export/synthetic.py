"""Random integer graphs for tests and benchmarks of the deployed forms (no training needed)."""
from __future__ import annotations

import numpy as np

from saf.export.ir import Feedback, Graph, Layer, decay_for


def _conv_out(h: int, k: int, stride: int, pad: int) -> int:
    return (h + 2 * pad - k) // stride + 1


def _threshold(wt: np.ndarray, first: bool, wmax: int) -> int:
    """First layer: a fraction of the mean |row| sum (graded input); later layers: about one standard
    deviation of the input current for binary inputs firing ~30% of the time."""
    if first:
        return int(max(8, np.abs(wt).sum(1).mean() * 0.35))
    std = wmax / np.sqrt(3.0) * np.sqrt(wt.shape[1] * 0.3)
    return int(max(8, 0.6 * std))


def random_graph(arch: str = "dense", T: int = 6, lam: float = 0.5, seed: int = 0,
                 feedback: bool = False, frac_bits: int = 6, wmax: int = 60,
                 input_shape: tuple = None, weight_words: int = 1, words_wmax: int = 1000) -> Graph:
    """A small network with integer weights in [-wmax, wmax] and thresholds giving moderate firing.

    arch: "dense" (64-32-16-10 MLP on 64 inputs) or "conv" (1x8x8 -> conv4 s1 -> conv8 s2 -> dense 10).
    feedback: add a delayed connection from the last spiking layer back into the first.
    weight_words = 2: every layer holds two synapse words per weight (hw_targets/words.py), all weights even,
    and every layer after the first (which reads graded input) draws them in [-words_wmax, words_wmax], beyond
    one word's 254, while every state and current stays below 2^24 (ONNX's float32 holds it exactly).
    """
    rng = np.random.default_rng(seed)
    layers: list = []
    two = int(weight_words) == 2

    def w(*shape, first: bool = True):
        top = words_wmax if two and not first else wmax
        v = rng.integers(-top, top + 1, size=shape).astype(np.int64)
        return v - v % 2 if two else v

    if arch == "dense":
        shape = tuple(input_shape or (64,))
        sizes = [int(np.prod(shape)), 32, 16]
        for i in range(len(sizes) - 1):
            wt = w(sizes[i + 1], sizes[i], first=i == 0)
            th = _threshold(wt, first=(i == 0), wmax=int(np.abs(wt).max()) if two else wmax)
            layers.append(Layer(f"fc{i}", "dense", wt, rng.integers(-th // 4, th // 4 + 1, sizes[i + 1]),
                                (sizes[i],), (sizes[i + 1],), threshold=th, frac_bits=frac_bits))
        in_shape = (sizes[-1],)
    elif arch == "conv":
        shape = tuple(input_shape or (1, 8, 8))
        c, h, wd = shape
        plan = [(4, 3, 1, 1), (8, 3, 2, 1)]
        for i, (co, k, s, p) in enumerate(plan):
            wt = w(co, c, k, k, first=i == 0)
            ho, wo = _conv_out(h, k, s, p), _conv_out(wd, k, s, p)
            th = _threshold(wt.reshape(co, -1), first=(i == 0), wmax=int(np.abs(wt).max()) if two else wmax)
            layers.append(Layer(f"conv{i}", "conv", wt, rng.integers(-th // 4, th // 4 + 1, co),
                                (c, h, wd), (co, ho, wo), threshold=th, stride=s, padding=p, frac_bits=frac_bits))
            c, h, wd = co, ho, wo
        n = c * h * wd
        wt = w(16, n, first=False)
        wt = wt // 4 * 2 if two else wt              # two words: half of words_wmax (fan-in 128), still even
        th = _threshold(wt, first=False, wmax=int(np.abs(wt).max()) if two else wmax)
        layers.append(Layer("fc2", "dense", wt, rng.integers(-th // 4, th // 4 + 1, 16),
                            (n,), (16,), threshold=th, frac_bits=frac_bits))
        in_shape = (16,)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    layers.append(Layer("readout", "readout", w(10, in_shape[0], first=False), rng.integers(-20, 21, 10),
                        in_shape, (10,), threshold=0, frac_bits=0))
    fbs = []
    if feedback:
        src = len(layers) - 2
        dst = 0
        fb = w(layers[dst].n_out, layers[src].n_out) // 2
        fbs.append(Feedback(src=src, dst=dst, kind="dense", weight=fb - fb % 2 if two else fb))
    for l in layers:
        l.weight_words = int(weight_words)
    return Graph(layers=layers, T=T, lam=lam, decay=decay_for(lam), input_shape=shape,
                 input_scale=16.0, input_bits=5, feedback=fbs, target="loihi2",
                 meta={"source": f"random_graph(arch={arch!r}, seed={seed})"})


def random_inputs(g: Graph, n: int, seed: int = 0) -> np.ndarray:
    """Quantized inputs x_q in the graph's input range, shape [n, *input_shape]."""
    rng = np.random.default_rng(seed)
    hi = (1 << g.input_bits) - 1
    return rng.integers(0, hi + 1, size=(n, *g.input_shape)).astype(np.int64)


def random_trains(g: Graph, n: int, seed: int = 0, density: float = 0.3) -> np.ndarray:
    """Time-varying inputs x_q[t], shape [n, T, *input_shape]: each entry is 0 with probability
    1 - density, else a value in the graph's input range (1 for a 1-bit spike train)."""
    rng = np.random.default_rng(seed)
    hi = (1 << g.input_bits) - 1
    vals = rng.integers(1, hi + 1, size=(n, g.T, *g.input_shape))
    return np.where(rng.random(vals.shape) < density, vals, 0).astype(np.int64)
