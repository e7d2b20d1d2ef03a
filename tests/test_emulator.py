"""The fast emulator (deploy/backends/emulator.py) against the literal spec oracle, and the exact SAF form
(export/proof/saf_int.py) against the emulator: equal where docs/design.md#exactness-and-the-certificate says
they must be, different where the leak truncates, the state saturates, or a fault is injected."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch

import saf.deploy.backends.emulator as emu  # noqa: E402
import saf.export.proof.saf_int as saf  # noqa: E402
from saf.deploy.backends.emulator import emulate, run_emulator  # noqa: E402
from saf.export.ir import Feedback, Graph, Layer, decay_for  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402


def spike_mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a.spikes, b.spikes))


def assert_matches_reference(g, x, res):
    r, s, p = reference_batch(g, x)
    np.testing.assert_array_equal(res.readout, r)
    assert len(res.spikes) == len(s) == len(g.spiking_layers)
    for li, (a, b) in enumerate(zip(res.spikes, s)):
        assert a.dtype == bool and a.shape == (len(x), g.T, g.spiking_layers[li].n_out)
        np.testing.assert_array_equal(a, b, err_msg=f"spikes of layer {li}")
    for li, (a, b) in enumerate(zip(res.potentials, p)):
        np.testing.assert_array_equal(a, b, err_msg=f"potentials of layer {li}")
    return s


def assert_forms_equal(g, x):
    e = run_emulator(g, x, record_potentials=True)
    f = run_saf_int(g, x, record_potentials=True)
    assert sum(e.info["saturated"].values()) == 0, "the case must not saturate"
    assert f.backend == "saf-int" and f.info["potentials_exact"]
    np.testing.assert_array_equal(f.readout, e.readout)
    for li, (a, b) in enumerate(zip(f.spikes, e.spikes)):
        np.testing.assert_array_equal(a, b, err_msg=f"spikes of layer {li}")
    for li, (a, b) in enumerate(zip(f.potentials, e.potentials)):
        np.testing.assert_array_equal(a, b, err_msg=f"potentials of layer {li}")
    return e


def count_ties(g, res, from_step=0) -> int:
    return sum(int((p[:, from_step:] == (l.threshold << l.frac_bits)).sum())
               for p, l in zip(res.potentials, g.spiking_layers))


def tie_inputs(g, x):
    """Edit each sample's x so that one first-layer neuron's current W_j x + B_j equals TH exactly
    (V[1] == TH << F): greedy over coordinates, largest |w| first. Dense first layer only."""
    l0 = g.layers[0]
    w, hi = l0.weight, (1 << g.input_bits) - 1
    x = x.copy()
    hit = 0
    for n in range(len(x)):
        j = n % l0.n_out
        xn = x[n].copy()
        delta = l0.threshold - int(w[j] @ xn + l0.bias[j])
        for i in np.argsort(-np.abs(w[j]), kind="stable"):
            if delta == 0:
                break
            if w[j, i]:
                k = int(np.clip(int(delta / w[j, i]), -xn[i], hi - xn[i]))
                xn[i] += k
                delta -= k * int(w[j, i])
        if delta == 0:
            assert w[j] @ xn + l0.bias[j] == l0.threshold
            x[n], hit = xn, hit + 1
    return x, hit


# ---------------------------------------------------------------- emulator == spec oracle

@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("T,lam", [(1, 0.5), (6, 1.0), (6, 0.9), (6, 0.25), (16, 0.5)])
def test_emulator_matches_reference(arch, feedback, T, lam):
    g = random_graph(arch, T=T, lam=lam, seed=T + int(100 * lam), feedback=feedback)
    x = random_inputs(g, 5 if arch == "dense" else 3, seed=1)
    res = run_emulator(g, x, record_potentials=True, batch_size=2)    # several batches
    s = assert_matches_reference(g, x, res)
    rates = [float(a.mean()) for a in s]
    assert all(0.02 < r < 0.98 for r in rates), rates                   # a non-trivial case
    bare = run_emulator(g, x, record_spikes=False)
    assert bare.spikes is None and bare.potentials is None
    np.testing.assert_array_equal(bare.readout, res.readout)


def conv_self_feedback_graph(T=6, lam=0.5, seed=4):
    g = random_graph("conv", T=T, lam=lam, seed=seed)
    rng = np.random.default_rng(seed)
    g.feedback.append(Feedback(src=0, dst=0, kind="conv", stride=1, padding=1,
                               weight=rng.integers(-30, 31, size=(4, 4, 3, 3)).astype(np.int64)))
    g.feedback.append(Feedback(src=2, dst=1, kind="dense",
                               weight=rng.integers(-30, 31, size=(g.layers[1].n_out, 16))))
    return g


@pytest.mark.parametrize("limit", [0, emu.DENSE_CONV_LIMIT])
def test_emulator_conv_paths_and_conv_feedback(monkeypatch, limit):
    """The strided im2col path (limit 0) and the unrolled dense path agree with the oracle, with a
    conv self-feedback edge and a second feedback edge."""
    monkeypatch.setattr(emu, "DENSE_CONV_LIMIT", limit)
    g = conv_self_feedback_graph()
    x = random_inputs(g, 3, seed=2)
    res = run_emulator(g, x, record_potentials=True)
    assert_matches_reference(g, x, res)
    assert_forms_equal(g, random_inputs(g, 40, seed=3))


@pytest.mark.parametrize("wmax,F,dtype", [(20000, 4, "float64"), (60, 12, "float32")])
def test_saturation_bit_identical(wmax, F, dtype):
    g = random_graph("dense", T=6, lam=0.5, seed=5, wmax=wmax, frac_bits=F)
    x = random_inputs(g, 4, seed=5)
    res = run_emulator(g, x, record_potentials=True)
    assert_matches_reference(g, x, res)
    assert res.info["saturated"]["fc0"] > 0 and res.info["max_abs_v"]["fc0"] == (1 << 23) - 1
    assert res.info["synapse_dtypes"]["fc0"] == dtype                   # 2^24 / 2^53 exact paths
    assert spike_mismatches(res, emulate(g, x, overflow="wrap")) > 0


def test_saturation_makes_the_forms_differ():
    """IF (lam = 1), F = 6. Layer 1 (TH 3, x = 1): neuron 0 gets I = 3 and fires every step, neuron 1
    I = 1 and fires at t = 3. Layer 2 (TH 1) gets -N per step from neuron 0, +P from neuron 1:
    V[2] = -2N << 6 saturates at -(2^23 - 1), so at t = 3 the clipped state reaches TH and fires,
    while the unsaturated (SAF) potential -3N + P stays below it."""
    N, P = 98304, 250000
    g = Graph(layers=[
        Layer("fc0", "dense", np.array([[3], [1]]), np.array([0, 0]), (1,), (2,), threshold=3),
        Layer("fc1", "dense", np.array([[-N, P]]), np.array([0]), (2,), (1,), threshold=1),
        Layer("readout", "readout", np.array([[1]]), np.array([0]), (1,), (1,))],
        T=4, lam=1.0, decay=0, input_shape=(1,), input_scale=1.0, input_bits=2)
    x = np.array([[1]])
    res = run_emulator(g, x, record_potentials=True)
    assert_matches_reference(g, x, res)
    assert res.info["saturated"]["fc1"] == 1
    assert res.spikes[1][0, :, 0].tolist() == [False, False, True, False]
    ideal = run_saf_int(g, x)
    np.testing.assert_array_equal(ideal.spikes[0], res.spikes[0])
    assert ideal.spikes[1][0, :, 0].tolist() == [False, False, False, False]
    assert ideal.readout[0, 0] == 0 and res.readout[0, 0] == 1


def test_threshold_tie_fires():
    """TH = 3. Neuron 0: I = x = 3, V[1] == TH << F. Neuron 1: I = 2 (bias), lam 0.5:
    V[1] = 2 << F, V[2] = (1 + 2) << F == TH << F after an exact leak."""
    F = 6
    ro = Layer("readout", "readout", np.array([[1, 0], [0, 1]]), np.array([0, 0]), (2,), (2,))
    fc = Layer("fc0", "dense", np.array([[1], [0]]), np.array([0, 2]), (1,), (2,), threshold=3,
               frac_bits=F)
    g = Graph(layers=[fc, ro], T=3, lam=0.5, decay=decay_for(0.5), input_shape=(1,),
              input_scale=1.0, input_bits=4)
    x = np.array([[3], [1]])        # sample 0: I = (3, 2): neuron 0 ties at t = 1; neuron 1 at t = 2
    res = run_emulator(g, x, record_potentials=True)
    assert_matches_reference(g, x, res)
    th = 3 << F
    assert res.potentials[0][0, 0, 0] == th and res.spikes[0][0, 0, 0]
    assert res.potentials[0][0, 1, 1] == th and res.spikes[0][0, 1, 1]
    assert res.potentials[0][1, 1, 1] == th and res.spikes[0][1, 1, 1]
    np.testing.assert_array_equal(run_saf_int(g, x).spikes[0], res.spikes[0])
    strict = emulate(g, x, tie="gt")
    assert not strict.spikes[0][0, 0, 0] and not strict.spikes[0][0, 1, 1]
    assert spike_mismatches(strict, res) > 0


# ---------------------------------------------------------------- SAF form == LIF form

@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("lam,T,F", [(0.5, 7, 6), (0.5, 3, 6), (0.25, 4, 6), (1.0, 6, 0),
                                     (0.5, 1, 0)])
def test_saf_int_equals_emulator_when_exact(arch, feedback, lam, T, F):
    g = random_graph(arch, T=T, lam=lam, seed=11 * T + F, feedback=feedback, frac_bits=F)
    x = random_inputs(g, 150, seed=T)
    if arch == "dense":
        x, hit = tie_inputs(g, x)
        assert hit > 75
    e = assert_forms_equal(g, x)
    assert count_ties(g, e) > 0
    assert run_saf_int(g, x).info["arithmetic"] in ("int32", "int64")


@pytest.mark.parametrize("arch,wmax", [("dense", 2), ("conv", 3)])
def test_saf_int_equals_emulator_T16_F15(arch, wmax):
    g = random_graph(arch, T=16, lam=0.5, seed=3, feedback=True, frac_bits=15, wmax=wmax)
    g.input_bits = 2
    x = random_inputs(g, 100, seed=3)
    e = assert_forms_equal(g, x)
    assert count_ties(g, e, from_step=1) > 0
    assert all(float(s.mean()) > 0.02 for s in e.spikes)


def test_saf_int_python_int_path_agrees(monkeypatch):
    g = conv_self_feedback_graph(T=7)
    x = random_inputs(g, 30, seed=8)
    fast = run_saf_int(g, x, record_potentials=True)
    monkeypatch.setattr(saf, "INT64_SAFE", 0)
    slow = run_saf_int(g, x, record_potentials=True, batch_size=7)
    assert fast.info["arithmetic"] in ("int32", "int64") and slow.info["arithmetic"] == "python-int"
    np.testing.assert_array_equal(fast.readout, slow.readout)
    assert spike_mismatches(fast, slow) == 0
    for a, b in zip(fast.potentials, slow.potentials):
        np.testing.assert_array_equal(a, b)


def saf_fractions(g, x_one):
    """Literal SAF Eq. 4 on one sample with Fractions (dense layers, no feedback): spikes, readout."""
    lam = Fraction(4096 - g.decay, 4096)
    A = [[Fraction(0)] * l.n_out for l in g.spiking_layers]
    spikes = [np.zeros((g.T, l.n_out), dtype=bool) for l in g.spiking_layers]
    R = np.zeros(g.readout.n_out, dtype=object)
    c = Fraction(0)
    for t in range(g.T):
        c = lam * c + 1
        a_in = [c * int(v) for v in x_one]
        for li, l in enumerate(g.spiking_layers):
            new = []
            for j in range(l.n_out):
                U = sum(int(w) * a for w, a in zip(l.weight[j], a_in)) + int(l.bias[j]) * c
                h = U - l.threshold * (lam * A[li][j] + 1) >= 0
                spikes[li][t, j] = h
                new.append(lam * A[li][j] + int(h))
            A[li], a_in = new, new
        R = R + g.readout.weight @ spikes[-1][t].astype(np.int64) + g.readout.bias
    return spikes, R.astype(np.int64)


def test_saf_int_non_dyadic_is_the_exact_rational_form():
    g = random_graph("dense", T=6, lam=0.9, seed=2)
    x = random_inputs(g, 3, seed=2)
    res = run_saf_int(g, x)
    assert res.info["arithmetic"] == "python-int" and res.info["dyadic_k"] is None
    assert res.info["lam_q"] == (1843, 2048)
    for n in range(len(x)):
        sp, R = saf_fractions(g, x[n])
        np.testing.assert_array_equal(res.readout[n], R)
        for li in range(len(sp)):
            np.testing.assert_array_equal(res.spikes[li][n], sp[li])


# ---------------------------------------------------------------- the comparison is sensitive

def first_differing_seed(make, seeds, n=64):
    for seed in seeds:
        g = make(seed)
        x = random_inputs(g, n, seed=seed)
        e = run_emulator(g, x)
        if sum(e.info["saturated"].values()):
            continue                              # a difference must come from the leak alone
        if spike_mismatches(e, run_saf_int(g, x)) > 0:
            return seed
    return None


def test_forms_differ_for_non_dyadic_leak():
    seed = first_differing_seed(lambda s: random_graph("dense", T=6, lam=0.9, seed=s, frac_bits=0),
                                range(10))
    assert seed is not None


def test_forms_differ_when_frac_bits_too_small():
    seed = first_differing_seed(lambda s: random_graph("conv", T=6, lam=0.5, seed=s, frac_bits=0),
                                range(30))
    assert seed is not None
    g = random_graph("conv", T=6, lam=0.5, seed=seed, frac_bits=5)  # F = k (T - 1): exact again
    assert_forms_equal(g, random_inputs(g, 64, seed=seed))


FAULTS = [dict(tie="gt"), dict(reset="zero"), dict(feedforward_delay=1), dict(feedback_delay=2)]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_each_fault_is_detected(fault):
    g = random_graph("conv", T=6, lam=0.5, seed=9, feedback=True)
    x = random_inputs(g, 100, seed=9)
    ideal = run_saf_int(g, x)
    good = emulate(g, x)
    assert spike_mismatches(good, ideal) == 0
    np.testing.assert_array_equal(good.readout, ideal.readout)
    bad = emulate(g, x, **fault)
    assert bad.info["faults"][next(iter(fault))] == next(iter(fault.values()))
    assert spike_mismatches(bad, ideal) > 0
    assert (bad.readout != ideal.readout).any()


def test_bad_options_rejected():
    g = random_graph("dense", T=2)
    x = random_inputs(g, 2)
    for kw in [dict(tie="eq"), dict(reset="hard"), dict(feedback_delay=0), dict(overflow="x")]:
        with pytest.raises(ValueError):
            emulate(g, x, **kw)


def test_inputs_beyond_input_bits_stay_exact():
    """The float32 synapse is exact only below 2^24: larger inputs must switch to a wider path."""
    g = random_graph("dense", T=4, seed=12)
    x = random_inputs(g, 3, seed=12) * 4000
    res = run_emulator(g, x, record_potentials=True)
    assert res.info["synapse_dtypes"]["fc0"] == "float64"
    assert_matches_reference(g, x, res)


@pytest.mark.parametrize("state_limit,waste", [(0, emu.UNROLL_WASTE), (emu.FLOAT_STATE_LIMIT, 0),
                                               (emu.FLOAT_STATE_LIMIT, 1 << 30)])
def test_state_dtype_and_conv_paths_match_the_oracle(monkeypatch, state_limit, waste):
    """The int64 state path (limit 0), the float64 one, the gathered im2col (waste 0) and the
    unrolled conv all give the oracle's spikes and potentials (saturating states included)."""
    monkeypatch.setattr(emu, "FLOAT_STATE_LIMIT", state_limit)
    monkeypatch.setattr(emu, "UNROLL_WASTE", waste)
    g = conv_self_feedback_graph()
    x = random_inputs(g, 3, seed=4)
    res = run_emulator(g, x, record_potentials=True)
    assert res.info["state_dtype"] == ("int64" if state_limit == 0 else "float64")
    assert_matches_reference(g, x, res)
    gs = random_graph("dense", T=6, lam=0.5, seed=5, wmax=20000, frac_bits=4)
    xs = random_inputs(gs, 4, seed=5)
    r = run_emulator(gs, xs, record_potentials=True)
    assert_matches_reference(gs, xs, r)
    assert r.info["saturated"]["fc0"] > 0


def test_float_state_equals_int_state_under_every_fault(monkeypatch):
    g = conv_self_feedback_graph()
    x = random_inputs(g, 5, seed=6)
    opts = [{}, {"tie": "gt"}, {"reset": "zero"}, {"feedforward_delay": 1}, {"feedback_delay": 2},
            {"overflow": "wrap"}, {"current_bits": 12}, {"readout_leak": False}]
    for kw in opts:
        a = emulate(g, x, record_potentials=True, **kw)
        monkeypatch.setattr(emu, "FLOAT_STATE_LIMIT", 0)
        b = emulate(g, x, record_potentials=True, **kw)
        monkeypatch.undo()
        assert a.info["state_dtype"] == "float64" and b.info["state_dtype"] == "int64"
        assert np.array_equal(a.readout, b.readout), kw
        assert all(np.array_equal(p, q) for p, q in zip(a.potentials, b.potentials)), kw
        assert a.info["saturated"] == b.info["saturated"] and a.info["max_abs_v"] == b.info["max_abs_v"]
