"""saf-int's exact float BLAS (export/proof/saf_int_linear.py) against exact Python-int products, its bound
guard, and its independence from the emulator in `saf verify`: a fault injected into the emulator's kernels is
caught by the saf-int/emulator pair, and so is a fault injected into saf-int."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import saf.deploy.backends.emulator_kernels as kernels
import saf.export.proof.saf_int_layer as layer_mod
import saf.export.proof.saf_int_linear as linear_mod
from saf.deploy.backends.registry import Bundle
from saf.deploy.verify.inputs import load_inputs
from saf.deploy.verify import verify
from saf.export.proof.saf_int import run_saf_int
from saf.export.proof.saf_int_linear import FLOAT32_EXACT, ExactLinear, sum_pool
from saf_test_helpers.faults import dropping_last_conv_tap

PROOF = Path(linear_mod.__file__).parent


def _exact_dense(w, a):
    """W a in Python ints, row by row (no numpy arithmetic on the values)."""
    return np.array([[sum(int(x) * int(y) for x, y in zip(wr, ar)) for wr in w] for ar in a], dtype=object)


def _exact_conv(w, a, in_shape, stride, pad):
    """The convolution by its definition, in Python ints: out[co, y, x] = sum W[co, c, i, j] in[c, y s + i - p, ...]."""
    co, c, kh, kw = w.shape
    _, h, wd = in_shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((a.shape[0], co, ho, wo), dtype=object)
    x = a.reshape(a.shape[0], c, h, wd)
    for r in range(a.shape[0]):
        for o in range(co):
            for yy in range(ho):
                for xx in range(wo):
                    s = 0
                    for ci in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                u, v = yy * stride + i - pad, xx * stride + j - pad
                                if 0 <= u < h and 0 <= v < wd:
                                    s += int(w[o, ci, i, j]) * int(x[r, ci, u, v])
                    out[r, o, yy, xx] = s
    return out.reshape(a.shape[0], -1)


@pytest.mark.parametrize("bits", [10, 30, 48])
def test_dense_is_exact_in_every_limb_regime(bits):
    """Small inputs take one float32 product, larger ones float64 limbs: every result equals the Python-int
    product, in int64 (R 2^48 < 2^62 for these weights) and for object inputs."""
    rng = np.random.default_rng(bits)
    w = rng.integers(-255, 256, (7, 40))
    a_max = (1 << bits) - 1
    a = rng.integers(-a_max, a_max + 1, (5, 40), dtype=np.int64)
    lin = ExactLinear("dense", w, (40,))
    got = lin(a, a_max)
    assert got.dtype == np.int64 and np.array_equal(got.astype(object), _exact_dense(w, a))
    assert (lin.limb_count(a_max) == 0) == (lin.row_abs * a_max < FLOAT32_EXACT)
    big = a.astype(object) * (1 << 70)                                # the Python-int (non-dyadic) regime
    got_big = lin(big, a_max << 70)
    assert got_big.dtype == object and np.array_equal(got_big, _exact_dense(w, big))


def test_float32_alone_would_round_where_the_guard_takes_limbs():
    """The fault the guard prevents: one float32 product on inputs past 2^24 / R rounds; ExactLinear does not."""
    rng = np.random.default_rng(0)
    w = rng.integers(-255, 256, (16, 64))
    a = rng.integers(0, 1 << 22, (32, 64), dtype=np.int64)
    exact = _exact_dense(w, a).astype(np.int64)
    naive = (a.astype(np.float32) @ w.T.astype(np.float32)).astype(np.int64)
    assert not np.array_equal(naive, exact)
    lin = ExactLinear("dense", w, (64,))
    assert lin.limb_count(1 << 22) >= 1 and np.array_equal(lin(a, 1 << 22), exact)


@pytest.mark.parametrize("stride,pad,bits", [(1, 1, 6), (2, 1, 6), (2, 0, 40), (1, 2, 40)])
def test_conv_is_the_definition(stride, pad, bits):
    rng = np.random.default_rng(stride * 10 + pad)
    w = rng.integers(-100, 101, (4, 3, 3, 3))
    in_shape = (3, 7, 6)
    a = rng.integers(0, 1 << bits, (3, 3 * 7 * 6), dtype=np.int64)
    got = ExactLinear("conv", w, in_shape, stride, pad)(a, (1 << bits) - 1)
    assert np.array_equal(got.astype(object), _exact_conv(w, a, in_shape, stride, pad))


def test_sum_pool_and_bound_guard():
    a = np.arange(2 * 2 * 4 * 6, dtype=np.int64).reshape(2, -1)
    ref = a.reshape(2, 2, 2, 2, 3, 2).sum(axis=(3, 5)).reshape(2, -1)
    assert np.array_equal(sum_pool(a, (2, 4, 6), 2), ref)
    lin = ExactLinear("dense", np.ones((2, 4), dtype=np.int64), (4,))
    with pytest.raises(ArithmeticError, match="exceeds its derived bound"):
        lin(np.array([[0, 0, 9, 0]], dtype=np.int64), 8)
    with pytest.raises(ArithmeticError, match="past int64"):
        lin(np.array([[0, 0, 9, 0]], dtype=np.int64), 1 << 62)



@pytest.mark.parametrize("k,shape", [(1, (2, 3, 5)), (3, (2, 6, 9)), (4, (1, 8, 4))])
def test_sum_pool_every_k(k, shape):
    """The separable sum (W neighbours, then rows) equals the k x k block sum by its definition, for every k."""
    c, h, w = shape
    a = np.random.default_rng(k).integers(-50, 50, (3, c * h * w), dtype=np.int64)
    ref = a.reshape(3, c, h // k, k, w // k, k).sum(axis=(3, 5)).reshape(3, -1)
    assert np.array_equal(sum_pool(a, shape, k), ref)

def test_saf_int_modules_import_no_other_form():
    """saf-int's own modules import nothing from deploy (the emulator, ONNX, Lava)."""
    for name in ("saf_int.py", "saf_int_linear.py", "saf_int_layer.py"):
        tree = ast.parse((PROOF / name).read_text())
        mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any("deploy" in m or "emulator" in m or "onnx" in m or "lava" in m for m in mods), (name, mods)


def test_both_schedules_agree(monkeypatch):
    """The layer-major schedule (no feedback) and the step-major one give the same spikes and potentials."""
    import saf.export.proof.saf_int as si
    from saf.export.synthetic import random_graph, random_inputs
    g = random_graph("conv", T=6, lam=0.5, seed=2)
    x = random_inputs(g, 23, seed=2)
    a = run_saf_int(g, x, record_potentials=True, batch_size=10)
    monkeypatch.setattr(si, "layer_major_run", si.step_major_run)
    b = run_saf_int(g, x, record_potentials=True)
    assert a.info["schedule"] == "layer-major" and np.array_equal(a.readout, b.readout)
    assert all(np.array_equal(p, q) for p, q in zip(a.spikes + a.potentials, b.spikes + b.potentials))
    assert all(s.any() for s in a.spikes)



@pytest.mark.parametrize("arch,feedback", [("conv", False), ("conv", True), ("dense", False)])
def test_int32_and_int64_recurrences_agree(monkeypatch, arch, feedback):
    """Below the 2^30 bound the recurrences run in int32; forced to int64 (INT32_SAFE = 0) they give the same
    spikes, potentials and readout (both schedules)."""
    import saf.export.proof.saf_int as si
    from saf.export.synthetic import random_graph, random_inputs
    g = random_graph(arch, T=6, lam=0.5, seed=4, feedback=feedback)
    x = random_inputs(g, 37, seed=4)
    a = run_saf_int(g, x, record_potentials=True, batch_size=16)
    monkeypatch.setattr(si, "INT32_SAFE", 0)
    b = run_saf_int(g, x, record_potentials=True)
    assert a.info["arithmetic"] == "int32" and b.info["arithmetic"] == "int64"
    assert np.array_equal(a.readout, b.readout)
    assert all(np.array_equal(p, q) for p, q in zip(a.spikes + a.potentials, b.spikes + b.potentials))
    assert all(s.any() for s in a.spikes)


def test_int32_is_chosen_by_the_derived_bound(monkeypatch):
    """int32 only when the run's bound (every intermediate, saf_int._bounds) is below INT32_SAFE."""
    import saf.export.proof.saf_int as si
    from saf.export.synthetic import random_graph, random_inputs
    g = random_graph("dense", T=6, lam=0.5, seed=4)
    x = random_inputs(g, 5, seed=4)
    bound = run_saf_int(g, x).info["bound"]
    monkeypatch.setattr(si, "INT32_SAFE", bound)
    assert run_saf_int(g, x).info["arithmetic"] == "int64"
    monkeypatch.setattr(si, "INT32_SAFE", bound + 1)
    assert run_saf_int(g, x).info["arithmetic"] == "int32"


def test_int32_product_guard():
    """The fault the guard prevents: an int32 product past 2^31 wraps; ExactLinear refuses int32 input whose bound
    allows it, and gives the exact value in int64."""
    w = np.full((1, 4), 1000, dtype=np.int64)
    a = np.full((1, 4), 1 << 20, dtype=np.int32)
    assert int((a @ w.T.astype(np.int32))[0, 0]) != 4000 << 20
    lin = ExactLinear("dense", w, (4,))
    with pytest.raises(ArithmeticError, match="past int32"):
        lin(a, 1 << 20)
    assert int(lin(a.astype(np.int64), 1 << 20)[0, 0]) == 4000 << 20


# ------------------------------------------------------------- independence, in verify

def _pair(bundle, x):
    """verify's saf-int/emulator pair on a freshly loaded bundle (the emulator's plan is cached per bundle)."""
    rep = verify(Bundle.load(bundle.path), x, None, ["saf-int", "emulator"])
    return rep, next(p for p in rep.pairs if {p["a"], p["b"]} == {"saf-int", "emulator"})


@pytest.fixture(scope="module")
def demo(golden_demo_bundle):
    b = golden_demo_bundle
    x = load_inputs(b, "digits", None, 40)[0]
    rep, p = _pair(b, x)
    assert rep.ok and p["expected_exact"] and p["spike_mismatches"] == 0 and p["spikes_total"] > 0
    return b, x


def test_verify_catches_one_flipped_spike_in_the_emulator_kernel(demo, monkeypatch):
    b, x = demo
    real, calls = kernels.spiking_layer, []

    def flip_one(*args):
        real(*args)
        calls.append(1)
        if len(calls) == 2:                                          # the second spiking layer, one spike
            S = args[-6]
            S[0, S.shape[1] // 2, 0] = ~S[0, S.shape[1] // 2, 0]

    monkeypatch.setattr(kernels, "spiking_layer", flip_one)
    rep, p = _pair(b, x)
    assert calls and not rep.ok and p["spike_mismatches"] > 0


def test_verify_catches_a_dropped_conv_tap_in_the_emulator_kernel(demo, monkeypatch):
    b, x = demo
    drop_last = dropping_last_conv_tap(kernels.conv_runs)

    monkeypatch.setattr(kernels, "conv_runs", drop_last)
    rep, p = _pair(b, x)
    assert not rep.ok and p["spike_mismatches"] > 0


def test_verify_catches_one_flipped_spike_in_saf_int(demo, monkeypatch):
    """Fault in saf-int: one neuron of the second layer fires (or not) against the comparison, at one step."""
    b, x = demo
    real, calls = layer_mod.LayerState.step, []

    def flip_one(self, t, su, C, into=None):
        H = real(self, t, su, C, into)
        calls.append(1)
        if self.layer.name == b.graph.spiking_layers[1].name and t == 2:
            j = self.layer.n_out // 2
            H[0, j] = ~H[0, j]
            self.A[0, j] += self.ar.S if H[0, j] else -self.ar.S    # the accumulation follows the spike
        return H

    monkeypatch.setattr(layer_mod.LayerState, "step", flip_one)
    rep, p = _pair(b, x)
    assert calls and not rep.ok and p["spike_mismatches"] > 0


def test_verify_catches_a_dropped_weight_in_saf_int(demo, monkeypatch):
    """Fault in saf-int's exact BLAS: one weight of the first conv read as 0."""
    b, x = demo
    real = ExactLinear.__init__

    def drop(self, kind, weight, *args, **kw):
        real(self, kind, weight, *args, **kw)
        if kind == "conv" and self.shape[1] == 1:                    # the first conv (one input channel)
            nz = np.flatnonzero(self.w64[0])[0]
            self.w64[0, nz] = 0
            if self.w32 is not None:
                self.w32[0, nz] = 0

    monkeypatch.setattr(ExactLinear, "__init__", drop)
    rep, p = _pair(b, x)
    assert not rep.ok and p["spike_mismatches"] > 0
