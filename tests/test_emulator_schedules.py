"""The emulator's two schedules compute the same integer network: the layer-major one (event-driven
compiled synapses, fused neuron loop, channels-last maps; deploy/backends/emulator_layers.py) against the
step-by-step numpy one (deploy/backends/emulator.py), spike for spike and potential for potential, and both
against the independent per-step reference of tests/saf_test_helpers/reference_lif.py."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import saf.deploy.backends.emulator_kernels as kernels
from saf.deploy.backends.emulator import emulate
from saf.export.synthetic import random_graph, random_inputs, random_trains

from saf_test_helpers.reference_lif import reference_batch
from saf_test_helpers.graphs import pooled_graph, pooled_inputs
from saf_test_helpers.faults import dropping_last_conv_tap


def _both(g, x):
    a = emulate(g, x, record_potentials=True, layer_schedule=False)
    b = emulate(g, x, record_potentials=True)
    assert a.info["schedule"] == "step-major" and b.info["schedule"] == "layer-major"
    return a, b


def _same(a, b):
    assert np.array_equal(a.readout, b.readout)
    for p, q in zip(a.spikes, b.spikes):
        assert np.array_equal(p, q)
    for p, q in zip(a.potentials, b.potentials):
        assert np.array_equal(p, q)
    assert a.info["max_abs_v"] == b.info["max_abs_v"]
    assert a.info["saturated"] == b.info["saturated"]


@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("lam", [0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_major_equals_step_major(arch, lam, seed):
    g = random_graph(arch, T=6, lam=lam, seed=seed)
    a, b = _both(g, random_inputs(g, 37, seed=seed))
    _same(a, b)
    assert sum(int(s.sum()) for s in a.spikes) > 0


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_layer_major_spike_trains_and_reference(arch):
    g = random_graph(arch, T=5, lam=0.5, seed=4)
    x = random_trains(g, 19, seed=2)
    a, b = _both(g, x)
    _same(a, b)
    readout, spikes, pots = reference_batch(g, x)
    assert np.array_equal(readout, b.readout)
    for p, q in zip(spikes, b.spikes):
        assert np.array_equal(p, q)
    for p, q in zip(pots, b.potentials):
        assert np.array_equal(p, q)


def test_layer_major_leaky_readout_v0_and_saturation():
    g = random_graph("conv", T=6, lam=0.5, seed=2)
    ro = dataclasses.replace(g.readout, decay=g.decay, frac_bits=6)
    first = dataclasses.replace(g.layers[0], v0=int(g.layers[0].threshold) << 5,
                                weight=g.layers[0].weight * 40, threshold=g.layers[0].threshold * 2)
    g = dataclasses.replace(g, layers=[first, *g.layers[1:-1], ro])
    a, b = _both(g, random_inputs(g, 23, seed=1) * 8)
    assert sum(a.info["saturated"].values()) > 0          # the 24-bit clip is exercised
    _same(a, b)


def test_strided_padded_conv_scatter_table_matches_im2col():
    rng = np.random.default_rng(0)
    for (h, w, c, co, k, s, p) in [(9, 7, 3, 5, 3, 2, 1), (8, 8, 2, 4, 2, 2, 0), (6, 5, 4, 3, 3, 1, 2)]:
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        x = rng.random((11, c, h, w)) < 0.3
        wt = rng.integers(-9, 10, (co, c, k, k))
        want = np.zeros((11, co, ho, wo), dtype=np.int64)
        xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
        for oy in range(ho):
            for ox in range(wo):
                patch = xp[:, :, oy * s:oy * s + k, ox * s:ox * s + k]
                want[:, :, oy, ox] = np.einsum("bcij,ocij->bo", patch, wt)
        out = np.empty((11, ho * wo * co), dtype=np.int32)
        hits = np.empty(11, dtype=np.int64)
        tab = kernels.scatter_table(h, w, k, k, s, p, ho, wo)
        kernels.conv_sums(np.ascontiguousarray(x.transpose(0, 2, 3, 1).reshape(11, -1)),
                          kernels.run_weights(wt).astype(np.int32), *kernels.conv_runs(tab, k, k, c, co), c, out, hits)
        got = out.reshape(11, ho, wo, co).transpose(0, 3, 1, 2)
        assert np.array_equal(got, want)
        # the taps each row executed: every (input, output pixel) pair of a window holding a spike
        reach = np.zeros(11, dtype=np.int64)
        for oy in range(ho):
            for ox in range(wo):
                reach += xp[:, :, oy * s:oy * s + k, ox * s:ox * s + k].sum(axis=(1, 2, 3))
        assert np.array_equal(hits, reach)


def test_schedule_comparison_catches_a_wrong_kernel(monkeypatch):
    """The comparison can fail: a scatter table that drops one tap changes the layer-major result."""
    g = random_graph("conv", T=6, lam=0.5, seed=0)
    x = random_inputs(g, 31, seed=0)
    real = kernels.scatter_table

    def off_by_one(*args):
        tab = real(*args).copy()
        tab[:, 0] = -1
        return tab

    monkeypatch.setattr(kernels, "scatter_table", off_by_one)
    a, b = _both(g, x)
    with pytest.raises(AssertionError):
        _same(a, b)


def test_faults_and_feedback_use_the_step_schedule():
    g = random_graph("dense", T=6, lam=0.5, seed=0)
    x = random_inputs(g, 5)
    assert emulate(g, x, tie="gt").info["schedule"] == "step-major"
    assert emulate(random_graph("dense", T=6, seed=0, feedback=True), x).info["schedule"] == "step-major"
    assert emulate(g, x).info["schedule"] == "layer-major"


def test_layer_major_sum_pooled_graph():
    """Sum-pooled layers (Layer.in_pool): the layer-major schedule's repeated weights equal the step
    schedule's pool-then-weights, conv and dense, with stride and padding."""
    g = pooled_graph(seed=3)
    a, b = _both(g, pooled_inputs(g, 29))
    _same(a, b)
    assert any(int(l.in_pool) > 1 for l in g.layers)


# ------------------------------------------- the fused layer kernels against saf-int (an independent form)

def _saf_int_equal(g, x):
    """The layer-major schedule (fused kernels) against saf-int (export/proof/saf_int.py: the SAF form in
    exact integers, its own code path), readout, spikes and potentials; returns the emulator's result."""
    from saf.export.proof.saf_int import run_saf_int
    e = emulate(g, x, record_potentials=True)
    assert e.info["schedule"] == "layer-major"                  # the fast path was taken
    assert sum(e.info["saturated"].values()) == 0               # saf-int has no 24-bit clip
    f = run_saf_int(g, x, record_potentials=True)
    assert f.info["potentials_exact"]
    assert np.array_equal(f.readout, e.readout), "readouts differ"
    for li, (p, q) in enumerate(zip(f.spikes, e.spikes)):
        assert np.array_equal(p, q), f"spikes of layer {li} differ"
    for li, (p, q) in enumerate(zip(f.potentials, e.potentials)):
        assert np.array_equal(p, q), f"potentials of layer {li} differ"
    return e


def _nets(golden_demo_bundle):
    from saf.deploy.verify.inputs import load_inputs
    b = golden_demo_bundle
    yield b.graph, load_inputs(b, "digits", None, 60)[0]          # conv, conv, sum-pooled dense
    for arch in ("dense", "conv"):
        g = random_graph(arch, T=6, lam=0.5, seed=5)
        yield g, random_inputs(g, 41, seed=5)
    g = pooled_graph(seed=3)
    yield g, pooled_inputs(g, 29)


def test_fused_layer_kernels_equal_saf_int(golden_demo_bundle):
    for g, x in _nets(golden_demo_bundle):
        e = _saf_int_equal(g, x)
        assert all(s.any() for s in e.spikes) and e.info["macs_executed"] > 0


def test_saf_int_comparison_catches_one_flipped_spike(golden_demo_bundle, monkeypatch):
    """Fault: one spike of the second spiking layer flipped after the fused kernel ran."""
    real = kernels.spiking_layer
    calls = []

    def flip_one(*args):
        real(*args)
        calls.append(1)
        if len(calls) == 2:
            S = args[-6]
            S[0, S.shape[1] // 2, 0] = ~S[0, S.shape[1] // 2, 0]

    g, x = next(_nets(golden_demo_bundle))
    _saf_int_equal(g, x)
    monkeypatch.setattr(kernels, "spiking_layer", flip_one)
    with pytest.raises(AssertionError, match="differ"):
        _saf_int_equal(g, x)
    assert len(calls) == len(g.spiking_layers)


def test_saf_int_comparison_catches_a_dropped_conv_tap(golden_demo_bundle, monkeypatch):
    """Fault: the last tap of every input pixel's last run dropped from the conv kernels' runs."""
    drop_last = dropping_last_conv_tap(kernels.conv_runs)

    g, x = next(_nets(golden_demo_bundle))
    monkeypatch.setattr(kernels, "conv_runs", drop_last)
    with pytest.raises(AssertionError, match="differ"):
        _saf_int_equal(g, x)


def test_int64_sums_and_saturation_equal_the_step_schedule(monkeypatch):
    """Weights large enough that the first layer's sums take the int64 kernels and states saturate."""
    real, wint = kernels.spiking_layer, []

    def seen(x, first, w, *args):                       # the layer kernel, its weight dtype recorded
        wint.append(w.dtype)
        return real(x, first, w, *args)

    monkeypatch.setattr(kernels, "spiking_layer", seen)
    g = random_graph("dense", T=6, lam=0.5, seed=2, wmax=1 << 22)
    a, b = _both(g, random_inputs(g, 23, seed=2))
    assert wint[0] == np.int64
    _same(a, b)
    assert sum(b.info["saturated"].values()) > 0
