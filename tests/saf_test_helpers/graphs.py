"""Small integer graphs the tests build by hand and their bundles: a sum-pool graph, every spiking layer at one
neuron mode (optionally recurrent), a threshold-tie graph, and a certified bundle of a graph."""
from __future__ import annotations

import copy

import numpy as np

from saf.deploy.backends.registry import Bundle
from saf.export.bundle.store import write_bundle
from saf.export.ir import Feedback, Graph, Layer
from saf.export.onnx_model import save_onnx_model
from saf.export.proof.certificate import certify
from saf.core.neuron_modes import ALL_MODES, NeuronMode

IDS = [f"{m.reset}{m.compare}" for m in ALL_MODES]


def with_modes(g: Graph, mode: NeuronMode, recurrent: bool = False) -> Graph:
    """A copy of g with every spiking layer at `mode`; recurrent: the last spiking layer (dense) and, in a
    conv net, the first conv layer each feed back into themselves (src == dst, one step of delay)."""
    g = copy.deepcopy(g)
    for l in g.spiking_layers:
        l.reset, l.compare = mode.reset, mode.compare
    if recurrent:
        rng = np.random.default_rng(7)
        last = len(g.spiking_layers) - 1
        n = g.spiking_layers[last].n_out
        g.feedback.append(Feedback(src=last, dst=last, kind="dense", weight=rng.integers(-30, 31, (n, n))))
        first = g.spiking_layers[0]
        if first.kind == "conv":
            c = first.out_shape[0]
            g.feedback.append(Feedback(src=0, dst=0, kind="conv", weight=rng.integers(-20, 21, (c, c, 3, 3)),
                                       padding=1))
    return g


def tie_graph(mode: NeuronMode, T: int = 4) -> Graph:
    """IF (lam = 1), TH = 6, F = 6: input 6 through weight 1 puts V[1] exactly on TH << 6 (a tie); weights 2, 3
    overshoot, so later steps depend on the reset."""
    fc = Layer("fc0", "dense", np.array([[1], [2], [3]]), np.array([0, 0, 1]), (1,), (3,), threshold=6,
               reset=mode.reset, compare=mode.compare)
    ro = Layer("readout", "readout", np.array([[1, 2, 0], [0, 1, 3]]), np.array([0, 1]), (3,), (2,))
    return Graph(layers=[fc, ro], T=T, lam=1.0, decay=0, input_shape=(1,), input_scale=1.0, input_bits=4)


def pooled_graph(seed: int = 0) -> Graph:
    """A small random graph in sum-pool form: conv1 (8x8) -> conv2 (sum pool 2, 3x3 on the 4x4 counts)
    -> fc3 (sum pool 2 over conv2's 4x4 map) -> readout."""
    rng = np.random.default_rng(seed)
    w = lambda *s: (rng.integers(-40, 41, s) * 2).astype(np.int64)  # noqa: E731  (even, like Loihi's)
    conv1 = Layer("conv1", "conv", w(4, 2, 3, 3), rng.integers(-20, 21, 4), (2, 8, 8), (4, 8, 8), threshold=300,
                  padding=1)
    conv2 = Layer("conv2", "conv", w(6, 4, 3, 3), rng.integers(-5, 6, 6), (4, 8, 8), (6, 4, 4), threshold=120,
                  padding=1, in_pool=2)
    fc3 = Layer("fc3", "dense", w(12, 6 * 2 * 2), rng.integers(-5, 6, 12), (6, 4, 4), (12,), threshold=150,
                in_pool=2)
    ro = Layer("readout", "readout", w(5, 12), rng.integers(-9, 10, 5), (12,), (5,))
    return Graph(layers=[conv1, conv2, fc3, ro], T=6, lam=0.5, decay=2048, input_shape=(2, 8, 8), input_scale=1.0,
                 input_bits=5)


def pooled_inputs(g: Graph, n: int, seed: int = 1) -> np.ndarray:
    """n random 5-bit input frames for g."""
    return np.random.default_rng(seed).integers(0, 32, (n, *g.input_shape)).astype(np.int64)


def certified_bundle(tmp_path, g, name="b") -> Bundle:
    """g written as a bundle with its certificate and ONNX model, loaded."""
    out = write_bundle(g, tmp_path / name, extra={"certificate": certify(g).to_dict()},
                       writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    return Bundle.load(out)
