"""FP's exact event-driven simulator (train/methods/fp/sim.py; docs/methods.md#f3-simulator-against-euler) against an
independent fine Euler integration of the two ODEs, corner cases, and the API (train/methods/fp/net.py)."""
from __future__ import annotations

import numpy as np
import pytest

import saf.train.methods.fp.kernel as fp_kernel
import saf.train.methods.fp.sim as fp_sim
from saf.train.methods.fp.kernel import critical_time, h, h_prime, phi
from saf.train.methods.fp.sim import simulate, simulate_batch, simulate_layer_batch
from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode, first_spike_prediction

A, B, TH = 1.0, 0.9, 1.0


def euler_layer(alpha, beta, theta, W, t_in, dt, t_end):
    """Forward Euler on dI/dt = -alpha I, dV/dt = -beta V + I (inputs add W to I at their step,
    fire at V >= theta, V -= theta): per neuron the list of spike times (step end times)."""
    n = W.shape[0]
    I = np.zeros(n)
    V = np.zeros(n)
    out = [[] for _ in range(n)]
    steps = int(round(t_end / dt))
    k_in = np.round(np.asarray(t_in) / dt).astype(np.int64)
    for s in range(steps):
        for j in np.nonzero(k_in == s)[0]:
            I += W[:, j]
        V, I = V + dt * (-beta * V + I), I + dt * (-alpha * I)
        fired = V >= theta
        for i in np.nonzero(fired)[0]:
            out[i].append((s + 1) * dt)
        V[fired] -= theta
    return [np.array(o) for o in out]


def spike_lists(t, i, n):
    return [t[i == k] for k in range(n)]


def max_spike_error(a, b):
    """Largest |difference| of matched spike times; inf when the spike counts differ."""
    if any(len(x) != len(y) for x, y in zip(a, b)):
        return np.inf
    d = [np.abs(x - y).max() for x, y in zip(a, b) if len(x)]
    return max(d) if d else 0.0


W_F3 = np.array([[1.8, 0.9, -0.4], [6.0, 0.0, 0.0], [0.3, 0.2, 0.1], [2.5, -1.0, 3.0]])
T_F3 = np.array([0.0, 0.5, 1.25])          # on both grids


def test_f3_simulator_matches_euler_with_error_of_order_dt():
    t, i = simulate(A, B, TH, 6.0, [W_F3], T_F3)[0]
    exact = spike_lists(t, i, 4)
    assert len(exact[1]) >= 3 and len(exact[2]) == 0          # several spikes between inputs; a silent one
    errs = [max_spike_error(exact, euler_layer(A, B, TH, W_F3, T_F3, dt, 6.0)) for dt in (1e-3, 1e-4)]
    assert errs[1] < 1e-2, errs
    assert errs[0] / errs[1] > 5, errs                        # shrinks like dt


def test_f3_comparison_fails_on_a_wrong_kernel_sign(monkeypatch):
    def wrong_h(alpha, beta, t):                               # injected fault: the kernel's sign flipped
        t = np.asarray(t, dtype=np.float64)
        return -np.exp(-beta * t) * phi(beta - alpha, t)
    monkeypatch.setattr(fp_kernel, "h", wrong_h)
    t, i = simulate(A, B, TH, 6.0, [W_F3], T_F3)[0]
    assert max_spike_error(spike_lists(t, i, 4), euler_layer(A, B, TH, W_F3, T_F3, 1e-3, 6.0)) > 0.1


def test_f3_comparison_fails_on_a_dropped_reset(monkeypatch):
    real = fp_sim.first_crossing

    def no_reset(alpha, beta, theta, I, V, dt):                # injected fault: search as if V were not reset
        return real(alpha, beta, theta, I, V - 0.5 * theta * (V == 0) * (I != 0), dt)
    monkeypatch.setattr(fp_sim, "first_crossing", no_reset)
    t, i = simulate(A, B, TH, 6.0, [W_F3], T_F3)[0]
    assert max_spike_error(spike_lists(t, i, 4), euler_layer(A, B, TH, W_F3, T_F3, 1e-3, 6.0)) > 0.1


def test_spike_times_satisfy_the_threshold_equation():
    """Every spike f: V(f^-) = theta from the closed form of Thm 1 (kernel sums, no simulator state)."""
    t, i = simulate(A, B, TH, 6.0, [W_F3], T_F3)[0]
    for f, k in zip(t, i):
        own = t[(i == k) & (t < f)]
        v = sum(W_F3[k, j] * h(A, B, f - g) for j, g in enumerate(T_F3) if g < f) - TH * np.exp(-B * (f - own)).sum()
        assert abs(v - TH) < 1e-12, (f, k, v)


def test_no_spike_and_near_equal_and_equal_rates():
    t, _ = simulate(A, B, TH, 20.0, [np.array([[0.5, 0.5]])], np.array([0.0, 1.0]))[0]
    assert t.size == 0
    # alpha == beta: h is t e^{-alpha t} (the limit), alpha ~ beta agrees with it to ~|d|
    assert np.allclose(h(1.0, 1.0, np.array([0.5, 2.0])), [0.5 * np.exp(-0.5), 2.0 * np.exp(-2.0)], rtol=0, atol=1e-15)
    assert np.allclose(h(0.999, 1.0, 2.0), 2.0 * np.exp(-2.0), rtol=2e-3)
    ts = [simulate(a, 1.0, TH, 10.0, [np.array([[4.0]])], np.array([0.0]))[0][0] for a in (1.0, 1.0 - 1e-9)]
    assert ts[0].size and np.allclose(ts[0], ts[1], atol=1e-8)


def test_kernel_derivative_and_critical_point():
    d = 1e-6
    for a, b in ((1.0, 0.9), (0.999, 1.0), (1.0, 1.0)):
        tt = np.array([0.3, 1.0, 4.0])
        assert np.allclose(h_prime(a, b, tt), (h(a, b, tt + d) - h(a, b, tt - d)) / (2 * d), atol=1e-9)
        I, V = 2.0, 0.3
        tc = critical_time(a, b, I, V)
        dv = lambda tau: fp_kernel.propagate(a, b, I, V, tau)[0] - b * fp_kernel.propagate(a, b, I, V, tau)[1]  # noqa: E731
        assert abs(dv(tc)) < 1e-12 and dv(tc - 0.1) > 0 > dv(tc + 0.1)


def test_grazing_crossing_fires_at_the_tangent():
    """A single input whose PSP peak exactly reaches theta: one spike at the peak (fire at V >= theta)."""
    tstar = np.log(B / A) / (B - A)
    w = TH / h(A, B, tstar) * (1 + 4e-16)
    t, _ = simulate(A, B, TH, 10.0, [np.array([[w]])], np.array([0.0]))[0]
    assert t.size == 1 and abs(t[0] - tstar) < 1e-6


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(3)
    Ws = [rng.normal(3, 1, (6, 4)), rng.normal(2, 0.1, (3, 6))]
    tin = rng.random((7, 4)) * 8
    tin[2, 1] = np.inf                                         # a missing input spike
    batch = simulate_batch(A, B, TH, 16.0, Ws, tin)
    for s in range(7):
        one = simulate(A, B, TH, 16.0, Ws, tin[s])
        for l in range(2):
            m = batch[l][0] == s
            assert np.array_equal(one[l][0], batch[l][1][m]) and np.array_equal(one[l][1], batch[l][2][m])
    first = simulate_batch(A, B, TH, 16.0, Ws, tin, first_only_last=True)[-1]
    for s in range(7):
        t, i = batch[-1][1][batch[-1][0] == s], batch[-1][2][batch[-1][0] == s]
        m = first[0] == s
        want = sorted((t[i == k].min(), k) for k in range(3) if (i == k).any())
        assert [(a, b) for a, b in zip(first[1][m], first[2][m])] == want


def test_runaway_is_an_error():
    with pytest.raises(fp_sim.SimulationError):
        simulate_layer_batch(A, B, 1e-6, 5.0, np.array([[50.0]]), np.array([[0.0]]), np.array([[0]]))


def test_fpnet_api_and_latency_code():
    code = LatencyCode.fit(np.array([[0.0, 1.0], [2.0, 3.0]]), 0.0, 16.0, bias_times=(0.9,))
    t = code.encode(np.array([[2.0, 1.0], [1.0, 5.0]]))
    assert np.array_equal(t, [[0.0, 16.0, 0.9], [8.0, 0.0, 0.9]])       # larger value earlier, clipped, bias last
    net = FPNet(FPParams(A, B, TH, 16.0, 24.0), [np.full((4, 3), 3.0), np.full((2, 4), 2.0)], code)
    ls = net.layer_spikes(t[0])
    fs = net.first_spikes(t)
    assert len(ls) == 2 and len(ls[1]) == 2 and fs.shape == (2, 2)
    assert fs[0, 0] == ls[1][0][0] and fs[0, 0] == fs[0, 1]              # equal weights: a tie
    assert list(net.predict(t)) == [0, 0]                                 # lowest index wins
    assert list(first_spike_prediction(np.array([[np.inf, np.inf], [3.0, 2.0]]))) == [0, 1]
    with pytest.raises(ValueError):
        FPParams(A, B, TH, 16.0, 8.0).check()


def _shift_error(Ws, tin, delta, fixed=()):
    """Max |spike time (inputs shifted by delta, except the `fixed` ones) - (spike time + delta)|;
    inf when the spike counts differ."""
    moved = tin + delta
    for j in fixed:
        moved[j] = tin[j]
    a = simulate_batch(A, B, TH, 20.0, Ws, tin[None], first_only_last=True)
    b = simulate_batch(A, B, TH, 20.0 + delta, Ws, moved[None], first_only_last=True)
    if any(len(x[1]) != len(y[1]) for x, y in zip(a, b)):
        return np.inf
    return max(np.abs(x[1] + delta - y[1]).max(initial=0.0) for x, y in zip(a, b))


def test_without_a_bias_spike_the_net_is_blind_to_a_global_shift():
    """Zero initial state and time-invariant dynamics: shifting every input spike by delta shifts every
    spike by delta, so the first-spike prediction cannot see the overall magnitude of the features
    (why fp-iris carries a bias spike at t = 0); a bias spike that does not move breaks the symmetry."""
    rng = np.random.default_rng(5)
    Ws = [rng.normal(3, 1, (6, 3)), rng.normal(2, 0.3, (3, 6))]
    tin = np.array([1.0, 2.5, 4.0])
    assert _shift_error(Ws, tin, 3.0) < 1e-12
    Wb = [np.concatenate([Ws[0], rng.normal(0.5, 0.1, (6, 1))], axis=1), Ws[1]]
    assert _shift_error(Wb, np.append(tin, 0.0), 3.0, fixed=(3,)) > 1e-3
