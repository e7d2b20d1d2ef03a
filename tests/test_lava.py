"""The lava-own backend (the toolchain's own Processes: deploy/lava/backend.py on deploy/lava/procs/) against the literal spec oracle:
fixed_pt bit for bit (readout and every spike), the streaming schedule (period P > 1 for feedback,
state reset between samples, chunked runs), floating_pt where the integer decay is exact, ties and
saturation. Each run_lava call compiles and runs a Lava network (~0.4 s), so the cases are few and
small."""
from __future__ import annotations


import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch

import saf.deploy.backends.emulator as emu  # noqa: E402
from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.lava.backend import run_lava  # noqa: E402
from saf.deploy.lava.graph import make_schedule  # noqa: E402
from saf.export.ir import STATE_MAX, Feedback, Graph, Layer, decay_for  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402


def assert_matches_reference(g, x, res, tag="fixed_pt"):
    """Readout and all spike trains equal the oracle's; returns the oracle's (spikes, potentials)."""
    r, s, p = reference_batch(g, x)
    assert res.backend == f"lava-{tag}"
    assert res.readout.dtype == np.int64 and res.readout.shape == r.shape
    np.testing.assert_array_equal(res.readout, r)
    assert len(res.spikes) == len(s) == len(g.spiking_layers)
    for li, (a, b) in enumerate(zip(res.spikes, s)):
        assert a.dtype == bool and a.shape == (len(x), g.T, g.spiking_layers[li].n_out)
        np.testing.assert_array_equal(a, b, err_msg=f"spikes of layer {li}")
    return s, p


def spike_mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a, b))


def assert_same_result(a, b):
    np.testing.assert_array_equal(a.readout, b.readout)
    assert spike_mismatches(a.spikes, b.spikes) == 0


def conv_feedback_graph(T=5, lam=0.5, seed=4):
    """Conv self-feedback on layer 0 (P = 1 alone) plus a dense edge 2 -> 1 (needs P = 2)."""
    g = random_graph("conv", T=T, lam=lam, seed=seed)
    rng = np.random.default_rng(seed)
    g.feedback.append(Feedback(src=0, dst=0, kind="conv", stride=1, padding=1,
                               weight=rng.integers(-30, 31, size=(4, 4, 3, 3)).astype(np.int64)))
    g.feedback.append(Feedback(src=2, dst=1, kind="dense",
                               weight=rng.integers(-30, 31, size=(g.layers[1].n_out, 16))))
    return g


# ---------------------------------------------------------------- fixed_pt == spec oracle

@pytest.mark.parametrize("arch,feedback,T,lam,period", [
    ("dense", False, 6, 0.5, 1),
    ("conv", False, 5, 0.25, 1),
    ("dense", True, 6, 0.9, 2),          # feedback 1 -> 0: P = 2
    ("conv", True, 4, 1.0, 3),           # feedback 2 -> 0: P = 3
    ("dense", True, 1, 0.5, 2),
])
def test_fixed_pt_matches_reference(arch, feedback, T, lam, period):
    g = random_graph(arch, T=T, lam=lam, seed=T + int(100 * lam), feedback=feedback)
    x = random_inputs(g, 3, seed=1)
    res = run_lava(g, x)
    s, _ = assert_matches_reference(g, x, res)
    if T > 1:
        assert all(0.02 < float(a.mean()) < 0.98 for a in s)
    assert res.info["period"] == period == make_schedule(g, 3).period
    n_layers = len(g.layers)
    assert res.info["offsets"] == [l + 2 for l in range(n_layers)]
    assert res.info["lava_steps"] == n_layers + 1 + period * (3 * T - 1)
    if feedback and T > 1:               # the feedback edge shapes the result
        g.feedback = []
        assert spike_mismatches(reference_batch(g, x)[1], s) > 0


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_leaking_readout_matches_reference(tag):
    """The Integrator leaks with the readout's decay on F fractional bits (a SAF-F model's readout):
    equal to the oracle's R[t] = decay(R[t-1]) + ((W s + B) << F), and not to the plain sum."""
    g = random_graph("dense", T=6, lam=0.5, seed=7, feedback=True)
    g.layers[-1].decay, g.layers[-1].frac_bits = g.decay, g.layers[0].frac_bits
    x = random_inputs(g, 3, seed=4)
    res = run_lava(g, x, tag=tag)
    assert_matches_reference(g, x, res, tag=tag)
    g.layers[-1].decay = 0
    assert (reference_batch(g, x)[0] != res.readout).any()


def test_conv_and_parallel_feedback_edges():
    g = conv_feedback_graph()
    x = random_inputs(g, 3, seed=2)
    res = run_lava(g, x)
    s, _ = assert_matches_reference(g, x, res)
    assert res.info["period"] == 2
    g.feedback = g.feedback[:1]
    assert spike_mismatches(reference_batch(g, x)[1], s) > 0


# ---------------------------------------------------------------- streaming and chunks

def test_samples_are_independent():
    """One compiled run streams [a, b, a, c, a] (chunk boundaries inside the stream): each sample's
    output is the oracle's, the same sample gives the same output whatever came before it, and a
    sample run alone gives the same output as inside the stream."""
    g = random_graph("conv", T=5, lam=0.5, seed=8, feedback=True)
    pool = random_inputs(g, 3, seed=8)
    x = pool[[0, 1, 0, 2, 0]]
    res = run_lava(g, x, chunk_samples=2)
    assert res.info["period"] == 3
    assert_matches_reference(g, x, res)
    for i in (2, 4):
        np.testing.assert_array_equal(res.readout[i], res.readout[0])
        for a in res.spikes:
            np.testing.assert_array_equal(a[i], a[0])
    alone = run_lava(g, pool[2:3])
    np.testing.assert_array_equal(alone.readout[0], res.readout[3])
    for a, b in zip(alone.spikes, res.spikes):
        np.testing.assert_array_equal(a[0], b[3])
    # the test is sensitive: without the reset, a sample's leftover state would change the next one
    _, _, p = reference_batch(g, x)
    assert any(np.abs(pl[:, -1]).max() > 0 for pl in p)


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunk_boundaries(chunk):
    g = random_graph("dense", T=4, lam=0.5, seed=3, feedback=True)
    x = random_inputs(g, 5, seed=4)
    res = run_lava(g, x, chunk_samples=chunk)
    assert_matches_reference(g, x, res)
    assert res.info["ms_per_sample"] > 0 and res.info["steps_per_s"] > 0


def test_without_spike_recording():
    g = random_graph("dense", T=4, lam=0.5, seed=3, feedback=True)
    x = random_inputs(g, 5, seed=4)
    res = run_lava(g, x, record_spikes=False, chunk_samples=2)
    assert res.spikes is None
    np.testing.assert_array_equal(res.readout, reference_batch(g, x)[0])


# ---------------------------------------------------------------- floating_pt

@pytest.mark.parametrize("arch,T,lam", [("dense", 6, 0.5), ("conv", 4, 0.25)])
def test_floating_pt_equals_fixed_pt_when_exact(arch, T, lam):
    """Dyadic lam = 2^-k with F = 6 >= k (T - 1): the integer decay never truncates."""
    g = random_graph(arch, T=T, lam=lam, seed=5, feedback=True, frac_bits=6)
    x = random_inputs(g, 3, seed=5)
    fl, fx = run_lava(g, x, tag="floating_pt"), run_lava(g, x, chunk_samples=2)
    assert fl.info["tag"] == "floating_pt" and fx.info["tag"] == "fixed_pt"
    assert_same_result(fl, fx)
    assert_matches_reference(g, x, fl, tag="floating_pt")


def test_floating_pt_drifts_when_decay_truncates():
    """lam = 0.9 and F = 0: fixed_pt truncates the leak (and equals the oracle), floating_pt not."""
    g = random_graph("dense", T=6, lam=0.9, seed=9, frac_bits=0)
    x = random_inputs(g, 4, seed=9)
    fx, fl = run_lava(g, x), run_lava(g, x, tag="floating_pt")
    s, _ = assert_matches_reference(g, x, fx)
    assert spike_mismatches(fl.spikes, s) > 0


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


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_threshold_tie_fires(tag):
    g = tie_graph()
    x = np.array([[3], [1]])
    s, p = assert_matches_reference(g, x, run_lava(g, x, tag=tag), tag=tag)
    th = 3 << 6
    assert p[0][0, 0, 0] == th and s[0][0, 0, 0]
    assert p[0][0, 1, 1] == th and s[0][0, 1, 1] and p[0][1, 1, 1] == th and s[0][1, 1, 1]


def test_many_ties():
    """F = 0, tiny weights: V == TH << F is frequent; a strict '>' would change the spikes."""
    g = random_graph("conv", T=8, lam=0.5, seed=7, frac_bits=0, wmax=2, feedback=True)
    x = random_inputs(g, 3, seed=7)
    s, p = assert_matches_reference(g, x, run_lava(g, x))
    assert sum(int((pl == (l.threshold << l.frac_bits)).sum())
               for pl, l in zip(p, g.spiking_layers)) > 20
    assert spike_mismatches(emulate(g, x, tie="gt").spikes, s) > 0


def test_saturation(monkeypatch):
    """IF with F = 13: states hit the 24-bit clip, and the clip level shows in the spikes."""
    g = random_graph("dense", T=8, lam=1.0, seed=0, frac_bits=13, feedback=True)
    x = random_inputs(g, 4, seed=5)
    s, p = assert_matches_reference(g, x, run_lava(g, x))
    assert int(np.abs(p[0]).max()) == STATE_MAX
    monkeypatch.setattr(emu, "STATE_MAX", 4 * STATE_MAX)
    assert spike_mismatches(emulate(g, x).spikes, s) > 0


# ---------------------------------------------------------------- errors (no Lava run needed)

def test_bad_arguments_rejected():
    g = random_graph("dense", T=3, seed=2)
    x = random_inputs(g, 2)
    with pytest.raises(ValueError, match="tag"):
        run_lava(g, x, tag="bit_acc")
    with pytest.raises(ValueError, match="chunk_samples"):
        run_lava(g, x, chunk_samples=0)
    with pytest.raises(ValueError, match=r"shape \[N, 64\]"):
        run_lava(g, x[0])
    with pytest.raises(ValueError, match="integers"):
        run_lava(g, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        run_lava(g, x + 31)
    big = random_graph("dense", T=3, seed=2, wmax=300)
    with pytest.raises(ValueError, match="fc0.*Loihi"):
        run_lava(big, x)
    g.feedback.append(Feedback(src=0, dst=1, kind="dense", weight=np.zeros((16, 32), int)))
    with pytest.raises(ValueError, match="feedback 0->1"):
        run_lava(g, x)
