"""The ONNX form (export/onnx_model.py, run by deploy/backends/onnx_runner.py) against the literal spec oracle:
readout and every layer's spike train bit for bit; the exactness proof (export/proof/onnx_exact.py) on
graphs that break float32's 2^24 bound; atomic saving; clear errors for bad inputs."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from saf_test_helpers.reference_lif import reference_batch

import saf.deploy.backends.emulator as emu  # noqa: E402
import saf.export.proof.onnx_exact as onnx_exact  # noqa: E402
from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.export.bundle.error import BundleError  # noqa: E402
from saf.export.ir import STATE_MAX, Feedback, Graph, IRError, Layer, decay_for  # noqa: E402
from saf.export.proof.onnx_exact import OnnxExactnessError, onnx_exactness  # noqa: E402
from saf.export.onnx_model import (META_FINGERPRINT, OnnxExportError, build_onnx_model,  # noqa: E402
                               save_onnx_model)
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402


def checked_model(g, spikes=True):
    model = build_onnx_model(g, spikes=spikes)
    onnx.checker.check_model(model, full_check=True)
    return model


def assert_matches_reference(g, x, res):
    """Readout and all spike trains equal the oracle's; returns the oracle's (spikes, potentials)."""
    r, s, p = reference_batch(g, x)
    assert res.backend == "onnx"
    assert res.readout.dtype == np.int64 and res.readout.shape == r.shape
    np.testing.assert_array_equal(res.readout, r)
    assert len(res.spikes) == len(s) == len(g.spiking_layers)
    for li, (a, b) in enumerate(zip(res.spikes, s)):
        assert a.dtype == bool and a.shape == (len(x), g.T, g.spiking_layers[li].n_out)
        np.testing.assert_array_equal(a, b, err_msg=f"spikes of layer {li}")
    return s, p


def onnx_equals_reference(g, x, batch_size=2):
    res = run_onnx(checked_model(g), g, x, batch_size=batch_size)
    return assert_matches_reference(g, x, res)


def count_ties(g, pots) -> int:
    return sum(int((p == (l.threshold << l.frac_bits)).sum()) for p, l in zip(pots, g.spiking_layers))


def spike_mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a, b))


def synapse_dtypes(g) -> dict:
    return {(it.layer, it.quantity): it.dtype for it in onnx_exactness(g) if "sum" in it.quantity}


def matmul_weight_dtypes(model) -> set:
    """Element types of the initializers that feed MatMul/Conv nodes."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    return {inits[i] for n in model.graph.node if n.op_type in ("MatMul", "Conv")
            for i in n.input if i in inits}


# ---------------------------------------------------------------- ONNX == spec oracle

@pytest.mark.parametrize("arch,feedback", [("dense", False), ("conv", False), ("conv", True),
                                           ("dense", True)])
@pytest.mark.parametrize("T,lam", [(1, 0.5), (6, 1.0), (6, 0.25), (6, 0.9), (16, 0.5),
                                   (16, 0.25)])
def test_onnx_matches_reference(arch, feedback, T, lam):
    g = random_graph(arch, T=T, lam=lam, seed=T + int(100 * lam), feedback=feedback)
    x = random_inputs(g, 5 if arch == "dense" else 3, seed=1)
    model = checked_model(g)
    res = run_onnx(model, g, x, batch_size=2)                      # several batches, a short last one
    s, _ = assert_matches_reference(g, x, res)
    rates = [float(a.mean()) for a in s]
    assert all(0.02 < r < 0.98 for r in rates), rates              # a non-trivial case
    assert all(d == "float32" for d in synapse_dtypes(g).values())
    # the contract of the module docstring
    assert model.opset_import[0].version == 17 and model.producer_name == "saf-toolchain"
    (xi,) = model.graph.input
    dims = [d.dim_value or d.dim_param for d in xi.type.tensor_type.shape.dim]
    assert xi.name == "x" and xi.type.tensor_type.elem_type == TensorProto.FLOAT
    assert dims == [T, "N", *g.input_shape]
    assert [o.name for o in model.graph.output] == ["readout"] + [f"spikes_{l.name}"
                                                                 for l in g.spiking_layers]
    bare = run_onnx(checked_model(g, spikes=False), g, x, record_spikes=False)
    assert bare.spikes is None
    np.testing.assert_array_equal(bare.readout, res.readout)


def conv_feedback_graph(T=6, lam=0.5, seed=4):
    """Conv self-feedback on layer 0 plus a dense edge 2 -> 1: two overlapping feedback blocks."""
    g = random_graph("conv", T=T, lam=lam, seed=seed)
    rng = np.random.default_rng(seed)
    g.feedback.append(Feedback(src=0, dst=0, kind="conv", stride=1, padding=1,
                               weight=rng.integers(-30, 31, size=(4, 4, 3, 3)).astype(np.int64)))
    g.feedback.append(Feedback(src=2, dst=1, kind="dense",
                               weight=rng.integers(-30, 31, size=(g.layers[1].n_out, 16))))
    return g


def test_conv_feedback_edges():
    g = conv_feedback_graph()
    x = random_inputs(g, 4, seed=2)
    s, _ = onnx_equals_reference(g, x)
    assert all(float(a.mean()) > 0.02 for a in s)
    # the feedback matters: without it the spikes differ
    g2 = conv_feedback_graph()
    g2.feedback = []
    assert spike_mismatches(reference_batch(g2, x)[1], s) > 0


def readout_only_graph():
    ro = Layer("readout", "readout", np.array([[1, -2, 3], [4, 0, -1]]), np.array([5, -7]),
               (3,), (2,))
    return Graph(layers=[ro], T=4, lam=0.5, decay=decay_for(0.5), input_shape=(3,),
                 input_scale=1.0, input_bits=4, input_signed=True)


def test_readout_only_and_signed_input():
    g = readout_only_graph()
    x = np.array([[-8, 7, 0], [3, -1, 2]])
    res = run_onnx(checked_model(g), g, x)
    np.testing.assert_array_equal(res.readout, reference_batch(g, x)[0])
    np.testing.assert_array_equal(res.readout, 4 * (x @ g.readout.weight.T + g.readout.bias))


# ---------------------------------------------------------------- ties and saturation

def tie_graph():
    """TH = 3, lam 0.5. Neuron 0: I = x; x = 3 gives V[1] == TH << F. Neuron 1: I = 2 (bias):
    V[1] = 2 << F, V[2] = (1 + 2) << F == TH << F after an exact leak."""
    F = 6
    ro = Layer("readout", "readout", np.array([[1, 0], [0, 1]]), np.array([0, 0]), (2,), (2,))
    fc = Layer("fc0", "dense", np.array([[1], [0]]), np.array([0, 2]), (1,), (2,), threshold=3,
               frac_bits=F)
    return Graph(layers=[fc, ro], T=3, lam=0.5, decay=decay_for(0.5), input_shape=(1,),
                 input_scale=1.0, input_bits=4)


def test_threshold_tie_fires():
    g = tie_graph()
    x = np.array([[3], [1]])
    s, p = onnx_equals_reference(g, x)
    th = 3 << 6
    assert p[0][0, 0, 0] == th and s[0][0, 0, 0]          # fires at equality
    assert p[0][0, 1, 1] == th and s[0][0, 1, 1]
    assert p[0][1, 1, 1] == th and s[0][1, 1, 1]


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_many_ties(arch):
    """F = 0 and tiny weights: V == TH << F happens often; a strict '>' would change the spikes."""
    g = random_graph(arch, T=8, lam=0.5, seed=7, frac_bits=0, wmax=2, feedback=True)
    x = random_inputs(g, 6, seed=7)
    s, p = onnx_equals_reference(g, x)
    assert count_ties(g, p) > 20
    assert spike_mismatches(emulate(g, x, tie="gt").spikes, s) > 0


@pytest.mark.parametrize("wmax,F,lam,seed,dtype", [(20000, 4, 0.5, 5, "int64"),
                                                   (60, 12, 0.5, 5, "float32"),
                                                   (60, 13, 1.0, 0, "float32")])
def test_saturation(monkeypatch, wmax, F, lam, seed, dtype):
    """The ONNX form models the 24-bit clip (it does not refuse such graphs)."""
    g = random_graph("dense", T=8, lam=lam, seed=seed, wmax=wmax, frac_bits=F, feedback=True)
    x = random_inputs(g, 4, seed=5)
    s, p = onnx_equals_reference(g, x)
    assert int(np.abs(p[0]).max()) == STATE_MAX                   # the clip was reached
    assert synapse_dtypes(g)[("fc0", "synaptic sum")] == dtype
    assert spike_mismatches(emulate(g, x, overflow="wrap").spikes, s) > 0
    if lam == 1.0:                  # here the clip level itself shows in the spikes
        monkeypatch.setattr(emu, "STATE_MAX", 4 * STATE_MAX)
        assert spike_mismatches(emulate(g, x).spikes, s) > 0


def test_saturation_changes_spikes():
    """IF, F = 6: layer 2's state saturates at -(2^23 - 1) and then reaches TH at t = 3, which the
    unclipped potential -3N + P would not (the same case as tests/test_emulator.py)."""
    N, P = 98304, 250000
    g = Graph(layers=[
        Layer("fc0", "dense", np.array([[3], [1]]), np.array([0, 0]), (1,), (2,), threshold=3),
        Layer("fc1", "dense", np.array([[-N, P]]), np.array([0]), (2,), (1,), threshold=1),
        Layer("readout", "readout", np.array([[1]]), np.array([0]), (1,), (1,))],
        T=4, lam=1.0, decay=0, input_shape=(1,), input_scale=1.0, input_bits=2)
    s, _ = onnx_equals_reference(g, np.array([[1]]))
    assert s[1][0, :, 0].tolist() == [False, False, True, False]


# ---------------------------------------------------------------- exactness proof

def test_exactness_bounds_are_attained():
    """All-positive weights and x = xmax reach the synaptic bound exactly; the items are the ones
    the builder uses and are all float32 here."""
    w = np.array([[3, 5, 7], [1, 1, 1]])
    fc = Layer("fc0", "dense", w, np.array([4, -9]), (3,), (2,), threshold=10, frac_bits=2)
    ro = Layer("readout", "readout", np.array([[2, -6]]), np.array([3]), (2,), (1,))
    g = Graph(layers=[fc, ro], T=5, lam=0.5, decay=decay_for(0.5), input_shape=(3,),
              input_scale=1.0, input_bits=4)
    items = {(it.layer, it.quantity): it for it in onnx_exactness(g)}
    assert all(it.ok for it in items.values())
    assert items[("input", "x_q in float32")].bound == 15
    assert items[("fc0", "synaptic sum")].bound == 15 * 15 == int((w @ [15, 15, 15]).max())
    assert items[("fc0", "current I << F")].bound == (225 + 9) << 2
    assert items[("fc0", "state before clip")].bound == STATE_MAX + ((225 + 9) << 2)
    assert items[("fc0", "decay product |V'|*(4096-D)")].bound == STATE_MAX * 2048
    assert items[("readout", "synaptic sum over T steps")].bound == 8 * 5
    assert items[("readout", "readout R[T]")].bound == 8 * 5 + 5 * 3
    x = np.array([[15, 15, 15], [0, 0, 0]])
    onnx_equals_reference(g, x)


def big_readout_graph(seed=3):
    g = random_graph("dense", T=6, lam=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    g.layers[-1].weight = rng.integers(-(1 << 22), 1 << 22, size=g.layers[-1].weight.shape)
    return g


def test_float32_violation_uses_int64(monkeypatch):
    """Readout weights ~2^22: sum over 16 inputs x up to T spikes exceeds 2^24, so the proof puts
    the readout on the int64 path, and the model is exact. Forcing float32 rounds the readout."""
    g = big_readout_graph()
    x = random_inputs(g, 8, seed=3)
    (item,) = [it for it in onnx_exactness(g) if it.layer == "readout" and "sum" in it.quantity]
    assert item.ok and item.dtype == "int64" and item.bound > 1 << 24 and "2^24" in item.reason
    assert "int64" in str(item) and item.limit == (1 << 63) - 1
    model = checked_model(g)
    assert TensorProto.INT64 in matmul_weight_dtypes(model)
    onnx_equals_reference(g, x, batch_size=8)
    monkeypatch.setattr(onnx_exact, "FLOAT32_EXACT", 1 << 62)     # pretend float32 is exact
    naive = build_onnx_model(g)
    assert matmul_weight_dtypes(naive) == {TensorProto.FLOAT}
    res = run_onnx(naive, g, x)
    assert (res.readout != reference_batch(g, x)[0]).any()


def test_int64_paths_conv_and_feedback():
    """Every synapse beyond 2^24: the int64 conv (Pad + strided Slice im2col, stride 1 and 2)."""
    g = random_graph("conv", T=5, lam=0.5, seed=2, feedback=True, wmax=1 << 20, frac_bits=0)
    g.feedback[0].weight = g.feedback[0].weight * 8
    d = synapse_dtypes(g)
    assert set(d.values()) == {"int64"}, d
    model = checked_model(g)
    assert matmul_weight_dtypes(model) == {TensorProto.INT64}
    assert not any(n.op_type == "Conv" for n in model.graph.node)
    s, _ = onnx_equals_reference(g, random_inputs(g, 4, seed=2))
    assert all(0.02 < float(a.mean()) < 0.98 for a in s)


def test_parallel_feedback_edges_get_their_own_dtype():
    g = random_graph("dense", T=6, lam=0.5, seed=3, frac_bits=0)
    rng = np.random.default_rng(0)
    big = rng.integers(-(1 << 22), 1 << 22, size=(32, 16))
    g.feedback = [Feedback(1, 0, "dense", big), Feedback(1, 0, "dense", np.ones((32, 16), int))]
    fb = {k: v for k, v in synapse_dtypes(g).items() if "feedback" in k[1]}
    assert sorted(fb.values()) == ["float32", "int64"]
    onnx_equals_reference(g, random_inputs(g, 6, seed=1))


@pytest.mark.parametrize("change,layer,quantity", [
    (dict(frac_bits=60), "fc0", "current I << F"),
    (dict(input_bits=26), "input", "x_q in float32"),
])
def test_refuses_what_no_dtype_holds(tmp_path, change, layer, quantity):
    g = random_graph("dense", T=4, seed=1)
    for k, v in change.items():
        if k == "frac_bits":
            g.layers[0].frac_bits = v
        else:
            setattr(g, k, v)
    bad = [it for it in onnx_exactness(g) if not it.ok]
    assert (bad[0].layer, bad[0].quantity) == (layer, quantity)
    with pytest.raises(OnnxExactnessError, match=f"layer '{layer}'"):
        build_onnx_model(g)
    with pytest.raises(OnnxExactnessError):
        save_onnx_model(g, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_malformed_graphs_rejected():
    """Structure is the IR's own check (Graph.validate, tests/test_ir_check.py), run before any ONNX is built."""
    g = random_graph("dense", T=3)
    g.layers[1].name = g.layers[0].name
    with pytest.raises(IRError, match="unique"):
        build_onnx_model(g)
    g = random_graph("conv", T=3)
    g.layers[1].out_shape = (8, 3, 3)
    with pytest.raises(IRError, match="conv1"):
        build_onnx_model(g)
    g = random_graph("dense", T=3)
    g.layers[0].weight = g.layers[0].weight.astype(np.float32)
    with pytest.raises(IRError, match="integers"):
        build_onnx_model(g)
    g = random_graph("dense", T=3, feedback=True)
    g.feedback[0].dst = 2
    with pytest.raises(IRError, match="feedback"):
        build_onnx_model(g)


# ---------------------------------------------------------------- saving and running

def test_save_is_atomic(tmp_path, monkeypatch):
    g = random_graph("conv", T=4, seed=6, feedback=True)
    x = random_inputs(g, 3, seed=6)
    path = tmp_path / "model.onnx"
    save_onnx_model(g, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    onnx.checker.check_model(str(path), full_check=True)
    assert_matches_reference(g, x, run_onnx(path, g, x))
    good = path.read_bytes()

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)               # fail after part of the data is written
    with pytest.raises(OSError, match="disk full"):
        save_onnx_model(random_graph("dense", T=4), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"] and path.read_bytes() == good
    fresh = tmp_path / "fresh.onnx"
    monkeypatch.setattr(os, "replace", lambda a, b: boom(None))
    with pytest.raises(OSError):
        save_onnx_model(g, fresh)
    monkeypatch.undo()
    assert not fresh.exists() and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with pytest.raises(OnnxExportError, match="does not exist"):
        save_onnx_model(g, tmp_path / "missing" / "m.onnx")


def test_run_onnx_rejects_bad_inputs(tmp_path):
    g = random_graph("dense", T=3, seed=2)
    model = checked_model(g)
    x = random_inputs(g, 2)
    with pytest.raises(ValueError, match=r"shape \[N, 64\]"):
        run_onnx(model, g, x[0])                                   # no batch axis
    with pytest.raises(ValueError, match="shape"):
        run_onnx(model, g, x[:, :32])
    with pytest.raises(ValueError, match="integers"):
        run_onnx(model, g, x.astype(np.float32))
    with pytest.raises(ValueError, match="integers"):
        run_onnx(model, g, x + 0.5)
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        run_onnx(model, g, x + 31)
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        run_onnx(model, g, x - 1)
    with pytest.raises(ValueError, match="batch_size"):
        run_onnx(model, g, x, batch_size=0)
    with pytest.raises(BundleError, match="fingerprint"):       # a bundle error: one line, exit 2
        run_onnx(model, random_graph("dense", T=3, seed=3), x)
    with pytest.raises(ValueError, match="record_spikes=False"):
        run_onnx(checked_model(g, spikes=False), g, x)
    with pytest.raises(FileNotFoundError):
        run_onnx(tmp_path / "nope.onnx", g, x)
    meta = {p.key: p.value for p in model.metadata_props}
    assert len(meta[META_FINGERPRINT]) == 64
    empty = run_onnx(model, g, x[:0])
    assert empty.readout.shape == (0, 10) and empty.spikes[0].shape == (0, 3, 32)
