"""Time-varying input x[t] ([N, T, *input_shape], a spike train / event frames) through every form:
the spec oracle (tests/saf_test_helpers/reference_lif.py, frame t at step t), the emulator, the exact SAF form
(a_in[t] = lam a_in[t-1] + x[t]), ONNX, Lava (own models) and Lava's stock models. Each comparison
is shown able to fail: a train whose frames are permuted in time gives different spikes."""
from __future__ import annotations


import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.emulator import emulate, run_emulator  # noqa: E402
from saf.deploy.lava.backend import run_lava  # noqa: E402
from saf.deploy.lava.stock import run_lava_stock  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_trains  # noqa: E402


def mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a, b))


def assert_reference(g, x, res):
    r, s, _ = reference_batch(g, x)
    np.testing.assert_array_equal(res.readout, r, err_msg=res.backend)
    for li, (a, b) in enumerate(zip(res.spikes, s)):
        assert a.shape == b.shape == (len(x), g.T, g.spiking_layers[li].n_out)
        np.testing.assert_array_equal(a, b, err_msg=f"{res.backend}: spikes of layer {li}")
    return s


def narrow_input(g, bits):
    """Trains of `bits`-bit values (random_graph tunes layer 1 for 5 bits): scale its threshold and
    bias by the smaller input range so that it still fires at moderate rates."""
    l0, r = g.layers[0], ((1 << bits) - 1) / ((1 << g.input_bits) - 1)
    l0.threshold = max(1, int(l0.threshold * r))
    l0.bias = np.asarray(l0.bias * r, dtype=np.int64)
    g.input_bits, g.input_time_varying = bits, True
    return g


def reversed_in_time(x):
    return np.ascontiguousarray(x[:, ::-1])


@pytest.mark.parametrize("arch,T,lam,feedback,bits", [("dense", 6, 0.5, False, 1), ("conv", 5, 0.5, False, 1),
                                                      ("dense", 4, 0.25, True, 5), ("conv", 4, 1.0, True, 3)])
def test_numpy_forms_equal_oracle_on_trains(arch, T, lam, feedback, bits):
    k = {0.5: 1, 0.25: 2, 1.0: 0}[lam]                   # F >= k (T - 1): every decay exact
    g = random_graph(arch, T=T, lam=lam, seed=T + bits, feedback=feedback, frac_bits=max(6, k * (T - 1)))
    narrow_input(g, bits)
    x = random_trains(g, 6, seed=bits, density=0.5)
    e = run_emulator(g, x, record_potentials=True)
    s = assert_reference(g, x, e)
    assert all(0.02 < float(a.mean()) < 0.98 for a in s), "the case must fire, and not everywhere"
    f = run_saf_int(g, x, record_potentials=True)
    assert f.info["potentials_exact"] and sum(e.info["saturated"].values()) == 0
    np.testing.assert_array_equal(f.readout, e.readout)
    assert mismatches(f.spikes, e.spikes) == 0 and mismatches(f.potentials, e.potentials) == 0
    # the comparison can fail: the same frames in another order are another input
    y = reversed_in_time(x)
    assert mismatches(run_saf_int(g, y).spikes, e.spikes) > 0
    assert mismatches(reference_batch(g, y)[1], f.spikes) > 0


def test_constant_frames_equal_the_constant_image():
    """[N, T, ...] holding the same frame at every step is the constant-input form, in every numpy form."""
    g = random_graph("conv", T=5, lam=0.5, seed=3)
    x = random_trains(g, 4, seed=9, density=0.7)[:, 0]
    xt = np.repeat(x[:, None], g.T, axis=1)
    for run in (run_emulator, run_saf_int):
        a, b = run(g, x), run(g, xt)
        np.testing.assert_array_equal(a.readout, b.readout)
        assert mismatches(a.spikes, b.spikes) == 0


def test_feedforward_delay_fault_is_caught_on_trains():
    g = random_graph("dense", T=6, lam=0.5, seed=2)
    narrow_input(g, 1)
    x = random_trains(g, 6, seed=2, density=0.5)
    good = run_emulator(g, x)
    assert mismatches(emulate(g, x, feedforward_delay=1).spikes, good.spikes) > 0


def test_bad_train_shape_is_one_clear_error():
    g = random_graph("dense", T=6, lam=0.5, seed=2)
    x = random_trains(g, 2, seed=2)[:, :5]
    for run in (run_emulator, run_saf_int):
        with pytest.raises(ValueError, match=r"\[N, 6, 64\]"):
            run(g, x)


@pytest.mark.parametrize("arch,feedback", [("dense", True), ("conv", False)])
def test_onnx_and_lava_equal_oracle_on_trains(arch, feedback):
    g = random_graph(arch, T=5, lam=0.5, seed=11, feedback=feedback)
    narrow_input(g, 1)
    x = random_trains(g, 3, seed=5, density=0.5)
    model = build_onnx_model(g, spikes=True)
    results = [run_onnx(model, g, x, batch_size=2), run_lava(g, x)]
    if not feedback:                     # Lava's stock models have no feedback input
        results.append(run_lava_stock(g, x, chunk_samples=2))
    for res in results:
        s = assert_reference(g, x, res)
    assert all(0.02 < float(a.mean()) < 0.98 for a in s)
    y = reversed_in_time(x)
    assert mismatches(run_onnx(model, g, y).spikes, s) > 0
    assert mismatches(run_lava(g, y).spikes, s) > 0


# ---------------------------------------------------------------- certificate bound on trains

def worst_train(g, neuron: int, sign: int):
    """The train driving first-layer neuron `neuron` to its extreme current at every step: x[t]_j =
    x_max where sign * w_j > 0, else 0 (the same frame each step maximizes |V| over every train)."""
    w = g.layers[0].weight[neuron]
    frame = np.where(sign * w > 0, g.input_max, 0).astype(np.int64)
    return np.repeat(frame[None, None], g.T, axis=1)


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_state_bound_holds_and_is_reached_by_a_constructed_train(lam):
    """The certificate bounds |V| by (Imax << F) sum_j lam^j for ANY train in the input range. A
    constructed train reaches it (IF: exactly; leaky: within the truncation of T decays); random
    trains stay below it; a bound computed for a smaller input range is beaten."""
    from saf.export.proof.certificate import certify
    from saf.export.proof.state_bound import layer_current_bound, state_bound

    g = narrow_input(random_graph("dense", T=6, lam=lam, seed=21), 2)    # x[t] in [0, 3]
    l0 = g.layers[0]
    l0.bias = np.zeros_like(l0.bias)
    l0.threshold = 1 << 16                       # TH<<F beyond any V: no spike, no reset, V is a pure sum
    cur = layer_current_bound(l0.weight, l0.bias, in_max=g.input_max)
    bound = state_bound(cur, l0.frac_bits, g.decay, g.T)
    ends = np.stack([np.where(l0.weight > 0, l0.weight, 0).sum(1), -np.where(l0.weight < 0, l0.weight, 0).sum(1)])
    sign_i, row = np.unravel_index(int(np.argmax(ends)), ends.shape)
    x = worst_train(g, int(row), 1 if sign_i == 0 else -1)
    e = run_emulator(g, x, record_potentials=True)
    reached = int(np.abs(e.potentials[0]).max())
    assert reached <= bound
    assert bound - reached <= (0 if lam == 1.0 else g.T)
    cert = certify(g)
    check = next(c for c in cert.checks if c.check == "state_24bit" and c.layer == l0.name)
    assert f"{bound:,}" in check.detail
    rnd = run_emulator(g, random_trains(g, 20, seed=3, density=0.6), record_potentials=True)
    assert int(np.abs(rnd.potentials[0]).max()) < reached
    short = state_bound(layer_current_bound(l0.weight, l0.bias, in_max=g.input_max - 1), l0.frac_bits,
                        g.decay, g.T)
    assert reached > short                       # the check can fail: a too-small bound is exceeded


def test_fuzz_makes_trains_for_a_time_varying_graph():
    """`saf verify --fuzz` on a time-varying bundle draws trains [T, ...] (frames differ in time); the
    emulator and the SAF form agree on every one, and the constructed bound input is the extreme train."""
    from saf.deploy.verify.fuzz_inputs import first_layer_extremes, make_fuzz_inputs

    g = narrow_input(random_graph("dense", T=5, lam=0.5, seed=8), 2)
    fz = make_fuzz_inputs(g, 30, seed=1)
    assert fz.xq.shape == (30, 5, 64)
    assert any(not np.array_equal(x[0], x[t]) for x in fz.xq for t in range(1, 5))
    e, f = run_emulator(g, fz.xq), run_saf_int(g, fz.xq)
    np.testing.assert_array_equal(e.readout, f.readout)
    assert mismatches(e.spikes, f.spikes) == 0
    ext = first_layer_extremes(g)
    assert ext.shape[1:] == (5, 64) and all(np.array_equal(x[0], x[t]) for x in ext for t in range(5))
    g.input_time_varying = False
    assert make_fuzz_inputs(g, 30, seed=1).xq.shape == (30, 64)
