"""FP's exact gradients (train/methods/fp/grad.py, fp_loss.py; docs/methods.md#fp-gradient, F1, F2, F4 of docs/methods.md#fp-experiments):
forward mode (Alg. 2) against central finite differences of the simulated loss, the structure of
L = dPhi/dF, forward mode against the adjoint, and the loss sign; each comparison fails on an
injected fault."""
from __future__ import annotations

import numpy as np
import pytest

import saf.train.methods.fp.grad as fp_grad
from saf.train.methods.fp.grad import (GRAZE_EPS, build_system, grad_adjoint, grad_forward, spike_jacobian_forward,
                                          unflatten)
from saf.train.methods.fp.kernel import h
from saf.train.methods.fp.loss import first_spike_loss
from saf.train.methods.fp.sim import simulate, simulate_batch

A, B, TH, TSIM = 1.0, 0.9, 1.0, 24.0
LOSS = dict(tau0=1.0, tau1=1.0, gamma=0.1)


def random_case(seed, sizes=(4, 6, 3), t_max=8.0, out_mean=2.0):
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(3.0, 1.0, (sizes[1], sizes[0])), rng.normal(out_mean, 0.3, (sizes[2], sizes[1]))]
    return Ws, rng.random(sizes[0]) * t_max, int(rng.integers(sizes[2]))


def loss_and_spikes(Ws, tin, y):
    sp = [(t, i) for _, t, i in simulate_batch(A, B, TH, TSIM, Ws, tin[None], first_only_last=True)]
    t, i = sp[-1]
    first = np.full(Ws[-1].shape[0], np.inf)
    np.minimum.at(first, i, t)
    loss, g, _ = first_spike_loss(first[None], np.array([y]), t_silent=TSIM, **LOSS)
    return loss, g[0], sp


def fd_check(seed, grad_fn=grad_forward, eps=1e-6, **kw):
    """(max relative error of grad_fn against central FD over the weights whose perturbation keeps
    every spike count, number of weights checked, number in all)."""
    Ws, tin, y = random_case(seed, **kw)
    _, g, sp = loss_and_spikes(Ws, tin, y)
    exact = grad_fn(build_system(A, B, TH, Ws, tin, sp), g)
    flat = np.concatenate([w.ravel() for w in Ws])
    counts = [len(s[0]) for s in sp]
    errs, checked = [], 0
    for k in range(flat.size):
        vals = []
        for sgn in (1, -1):
            f = flat.copy()
            f[k] += sgn * eps
            l, _, s2 = loss_and_spikes(unflatten(f, Ws), tin, y)
            vals.append((l, [len(s[0]) for s in s2]))
        if vals[0][1] != counts or vals[1][1] != counts:
            continue                                   # a spike appears or disappears: FD sees the jump
        checked += 1
        fd = (vals[0][0] - vals[1][0]) / (2 * eps)
        errs.append(abs(fd - exact[k]) / max(abs(fd), abs(exact[k]), 1e-3))
    return max(errs), checked, flat.size


@pytest.mark.parametrize("seed,out_mean", [(0, 2.0), (1, 2.0), (2, 0.6)])
def test_f1_forward_mode_equals_finite_differences(seed, out_mean):
    err, checked, n = fd_check(seed, out_mean=out_mean)
    assert checked >= 0.8 * n, (checked, n)
    assert err <= 1e-5, err


def test_f1_fails_on_a_wrong_kernel_derivative_sign(monkeypatch):
    real = fp_grad.h_prime
    monkeypatch.setattr(fp_grad, "h_prime", lambda a, b, t: -real(a, b, t))      # injected fault
    assert fd_check(0)[0] > 1e-2


def test_f1_fails_on_a_dropped_reset_term(monkeypatch):
    Ws, tin, y = random_case(2, out_mean=0.6)
    sys = build_system(A, B, TH, Ws, tin, loss_and_spikes(Ws, tin, y)[2])
    assert any(np.sum(sys.neuron[sys.layer == 0] == k) > 1 for k in range(6))   # own earlier spikes exist
    monkeypatch.setattr(fp_grad, "reset_block", lambda theta, beta, tq, iq: np.zeros((tq.size, tq.size)))
    assert fd_check(2, out_mean=0.6)[0] > 1e-2


def lower_triangular_positive(L):
    return bool(np.all(np.triu(L, 1) == 0) and np.all(np.diag(L) > 0))


def test_f2_jacobian_is_lower_triangular_in_time_order_with_a_positive_diagonal():
    for seed in range(6):
        Ws, tin, _ = random_case(seed, sizes=(4, 8, 3))
        sp = simulate(A, B, TH, TSIM, Ws, tin)
        for order in ("time", "layer"):
            sys = build_system(A, B, TH, Ws, tin, sp, prune=False, order=order)
            assert sys.L.shape[0] > 5 and sys.grazing == 0
            assert lower_triangular_positive(sys.L), (seed, order)
            if order == "time":
                assert np.all(np.diff(sys.times) >= 0)
        # L_ff = V'(f^-) computed independently by a central difference of the closed-form potential
        k = int(np.argmax(sys.layer == 1))
        f, i = sys.times[k], sys.neuron[k]
        hid_t, hid_i = sp[0]

        def v(t):
            return sum(Ws[1][i, j] * h(A, B, t - g) for g, j in zip(hid_t, hid_i) if g < f)
        assert abs((v(f + 1e-6) - v(f - 1e-6)) / 2e-6 - sys.L[k, k]) < 1e-6


def test_f2_check_fails_on_a_non_causal_order():
    Ws, tin, _ = random_case(0)
    sys = build_system(A, B, TH, Ws, tin, simulate(A, B, TH, TSIM, Ws, tin), prune=False, order="time")
    assert not lower_triangular_positive(sys.L.T)
    rev = sys.L[::-1, ::-1]
    assert not lower_triangular_positive(rev)


def test_f4_forward_mode_equals_adjoint_to_round_off():
    for seed in range(6):
        Ws, tin, y = random_case(seed, sizes=(5, 12, 3))
        _, g, sp = loss_and_spikes(Ws, tin, y)
        sys = build_system(A, B, TH, Ws, tin, sp)
        gf, ga = grad_forward(sys, g), grad_adjoint(sys, g)
        assert np.abs(gf - ga).max() <= 1e-12 * np.abs(gf).max(), seed
        # and forward mode is the triangular solve L dF = -P
        dF = spike_jacobian_forward(sys)
        assert np.abs(sys.L @ dF + sys.P).max() <= 1e-10 * max(1.0, np.abs(sys.P).max())


def test_f4_comparison_fails_when_one_entry_of_L_is_off():
    Ws, tin, y = random_case(1, sizes=(5, 12, 3))
    _, g, sp = loss_and_spikes(Ws, tin, y)
    sys = build_system(A, B, TH, Ws, tin, sp)
    bad = build_system(A, B, TH, Ws, tin, sp)
    r, c = np.nonzero(np.tril(bad.L, -1))
    bad.L[r[-1], c[-1]] *= 1.0 + 1e-6                      # injected fault, one entry
    gf, ga = grad_forward(sys, g), grad_adjoint(bad, g)
    assert np.abs(gf - ga).max() > 1e-12 * np.abs(gf).max()


def test_loss_sign_gradient_and_silent_convention():
    first = np.array([[1.0, 2.0, np.inf], [3.0, 1.5, 2.5]])
    y = np.array([0, 2])
    loss, g, silent = first_spike_loss(first, y, 0.5, 1.0, 0.2, 10.0)
    assert silent == 1 and g[0, 2] == 0.0
    # an earlier correct spike lowers the loss (the corrected sign: the regulariser is added)
    earlier = first.copy()
    earlier[1, 2] -= 0.1
    assert first_spike_loss(earlier, y, 0.5, 1.0, 0.2, 10.0)[0] < loss and g[1, 2] > 0
    fd = np.zeros_like(g)
    for idx in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]:
        p, m = first.copy(), first.copy()
        p[idx] += 1e-6
        m[idx] -= 1e-6
        fd[idx] = (first_spike_loss(p, y, 0.5, 1.0, 0.2, 10.0)[0] - first_spike_loss(m, y, 0.5, 1.0, 0.2, 10.0)[0]) / 2e-6
    assert np.allclose(fd, g, atol=1e-8)
    # the paper's printed sign (regulariser subtracted) would reward a late correct spike: detected
    reg_flipped = loss - 2 * 0.2 * np.mean([np.exp(1.0) - 1, np.exp(2.5) - 1])
    assert reg_flipped < loss


def test_grazing_is_floored_and_counted():
    tstar = np.log(B / A) / (B - A)
    w = TH / h(A, B, tstar) * (1 + 4e-16)
    Ws = [np.array([[w]]), np.array([[5.0]])]
    tin = np.array([0.0])
    sp = simulate(A, B, TH, TSIM, Ws, tin)
    sys = build_system(A, B, TH, Ws, tin, sp)
    assert sys.grazing == 1 and sys.L[0, 0] == GRAZE_EPS
    assert np.all(np.isfinite(grad_forward(sys, np.array([1.0]))))
