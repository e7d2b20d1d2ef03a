"""Pure neuron math (train/functional): the LIF form (Eq. 1) and the SAF form (Eq. 4/5) of one layer
on arbitrary tensors, the bias coefficient c[t], the surrogate gradients and the tie convention.

The SAF side is driven here from an independently accumulated potential U[t] = lam*U[t-1] + I[t]
(the definition in SAF paper Sec. 4.1), never from the LIF state, and its spikes/potentials are
recovered in the test from a[t] alone; the LIF side runs lif_step on the raw currents I[t]."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from saf.train.functional.neuron import (bias_coeff, lif_step, saf_potential, saf_spikes, saf_step,
                                     trace_step)
from saf.train.functional.replace import replace
from saf.train.functional.surrogate import SURROGATES, heaviside, spike

torch.set_num_threads(1)

SHAPES = [(11,), (4, 6), (2, 3, 5, 5)]
DYADIC_LAMS = [1.0, 0.5, 0.25, 0.125]
THETAS = [1.0, 0.5, 2.0]


def dyadic_currents(T, shape, seed, denom=8):
    """Currents on a coarse dyadic grid so both forms are exact in float64 and ties u == theta occur."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(-6, 14, shape, generator=g).to(torch.float64) / denom for _ in range(T)]


def run_lif(currents, lam, theta, fn=heaviside):
    u = s = None
    us, ss = [], []
    for cur in currents:
        u, s = lif_step(cur, u, s, lam, theta, fn)
        us.append(u)
        ss.append(s)
    return us, ss


def run_saf(currents, lam, theta, fn=heaviside):
    """SAF form from the accumulated potential; returns (u, s, a) per step, u and s via Eq. (5)
    written out here (and cross-checked against saf_potential/saf_spikes)."""
    U = a_prev = None
    us, ss, As = [], [], []
    for cur in currents:
        U = cur.clone() if U is None else lam * U + cur
        a = saf_step(U, a_prev, lam, theta, fn)
        if a_prev is None:
            s, u = a, U
        else:
            s, u = a - lam * a_prev, U - theta * lam * a_prev
        assert torch.equal(saf_spikes(a, a_prev, lam), s)
        assert torch.equal(saf_potential(U, a_prev, lam, theta), u)
        us.append(u)
        ss.append(s)
        As.append(a)
        a_prev = a
    return us, ss, As


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lam", DYADIC_LAMS)
@pytest.mark.parametrize("theta", THETAS)
def test_saf_equals_lif_exactly_on_dyadic_tensors(shape, lam, theta):
    T = 12
    cur = dyadic_currents(T, shape, seed=hash((shape, lam, theta)) % 2**31)
    for c in cur:                       # a constant current theta puts u exactly on theta every step
        c.view(-1)[0] = theta
    lu, ls = run_lif(cur, lam, theta)
    su, ss, sa = run_saf(cur, lam, theta)
    ties = 0
    for t in range(T):
        assert torch.equal(ss[t], ls[t]), f"spikes differ at t={t + 1}"
        assert torch.equal(su[t], lu[t]), f"potentials differ at t={t + 1}"
        assert set(ls[t].unique().tolist()) <= {0.0, 1.0}
        ties += int((lu[t] == theta).sum())
        assert lu[t].view(-1)[0] == theta and ls[t].view(-1)[0] == 1.0     # the built-in tie fires
        # a[t] is the weighted spike count sum_k lam^(t-k) s[k]
        acc = sum(lam ** (t - k) * ls[k] for k in range(t + 1))
        assert torch.equal(sa[t], acc)
    assert ties >= T, "u == theta was built in; no tie was exercised"
    assert 0 < sum(float(s.sum()) for s in ls) < T * ls[0].numel()   # neither silent nor saturated


@pytest.mark.parametrize("lam", [0.9, 0.77, 0.3, 1.0])
def test_saf_equals_lif_non_dyadic_lambda_float64(lam):
    """A non-dyadic leak rounds differently in the two forms; away from ties (margin asserted) the
    firing decisions still agree; a[t] - lam*a[t-1] and the potentials agree to rounding error."""
    g = torch.Generator().manual_seed(7)
    theta, T = 1.0, 16
    cur = [torch.rand(3, 40, generator=g, dtype=torch.float64) * 1.2 for _ in range(T)]
    lu, ls = run_lif(cur, lam, theta)
    su, ss, _ = run_saf(cur, lam, theta)
    margin = min(float((u - theta).abs().min()) for u in lu)
    assert margin > 1e-9
    for t in range(T):
        assert torch.allclose(ss[t], ls[t], rtol=0, atol=1e-12)
        assert torch.allclose(su[t], lu[t], rtol=0, atol=1e-12)
    assert 0 < sum(float(s.sum()) for s in ls) < T * ls[0].numel()


def test_tie_fires_in_both_forms():
    """H(0) = 1: u == theta fires, in both forms, at t = 1 and after a reset; one ulp below does not."""
    lam, theta = 0.5, 1.0
    eps = 2.0 ** -40
    # t = 1: the current equals theta.
    u, s = lif_step(torch.tensor([theta, theta - eps], dtype=torch.float64), None, None, lam, theta, heaviside)
    assert s.tolist() == [1.0, 0.0]
    a = saf_step(torch.tensor([theta, theta - eps], dtype=torch.float64), None, lam, theta, heaviside)
    assert a.tolist() == [1.0, 0.0]
    # t = 2 after a spike: u[2] = lam*(1 - 1) + I = I, so I = theta is a tie; in the SAF form
    # U[2] = lam*U[1] + I = 1.5 and the threshold is theta*(lam*a[1] + 1) = 1.5.
    I2 = torch.tensor([theta, theta - eps], dtype=torch.float64)
    u1 = torch.tensor([theta, theta], dtype=torch.float64)
    s1 = torch.ones(2, dtype=torch.float64)
    u2, s2 = lif_step(I2, u1, s1, lam, theta, heaviside)
    assert u2.tolist() == [theta, theta - eps] and s2.tolist() == [1.0, 0.0]
    U2 = lam * u1 + I2
    a2 = saf_step(U2, torch.ones(2, dtype=torch.float64), lam, theta, heaviside)
    assert (a2 - lam * 1.0).tolist() == [1.0, 0.0]
    # Surrogate spikes use the same convention as heaviside.
    for name in SURROGATES:
        x = torch.tensor([0.0, -0.0, -eps, eps], dtype=torch.float64)
        assert spike(x, name).tolist() == [1.0, 1.0, 0.0, 1.0]
        assert heaviside(x).tolist() == [1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("lam", [1.0, 0.5, 0.25, 0.9, 0.3])
def test_bias_coefficient(lam):
    # c[t] = sum_{k=0}^{t-1} lam^k (c[1] = 1), exact for dyadic lam.
    for t in range(1, 20):
        exact = sum(Fraction(lam) ** k for k in range(t))
        c = bias_coeff(t, lam)
        if lam in (1.0, 0.5, 0.25):
            assert Fraction(c) == exact
        else:
            assert abs(c - float(exact)) <= 1e-14 * float(exact)
        if t > 1:
            assert c == lam * bias_coeff(t - 1, lam) + 1.0
    assert bias_coeff(1, lam) == 1.0
    # It is exactly what a silent LIF neuron accumulates from a constant unit current (same rounding).
    u = s = None
    one = torch.ones(3, dtype=torch.float64)
    for t in range(1, 20):
        u, s = lif_step(one, u, s, lam, 1e9, heaviside)
        assert torch.all(u == bias_coeff(t, lam)), t
    # not the paper's misprint sum_{tau=0}^{t-1} lam^(t-tau) (which has no lam^0 term)
    if lam != 1.0:
        assert bias_coeff(3, lam) != lam + lam ** 2 + lam ** 3


def test_bias_coefficient_rejects_t0():
    with pytest.raises(ValueError, match="t=0"):
        bias_coeff(0, 0.5)


def test_trace_step():
    lam = 0.5
    s = [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])]
    a = None
    for t in range(3):
        a = trace_step(s[t], a, lam)
    assert a.tolist() == [1.0 + 0.25, 1.0 + 0.5, 0.5 + 0.25]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid_surrogate_gradient(dtype, shape):
    """Default alpha is 4: dH/dx ~ 4*sig(4x)*(1-sig(4x)), checked against autograd of sigmoid(4x)."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5).to(dtype)
    x.view(-1)[0] = 0.0
    xr = x.clone().requires_grad_(True)
    out = spike(xr)                                        # defaults: sigmoid, alpha = 4
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out.detach(), (x >= 0).to(dtype))
    w = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    (gx,) = torch.autograd.grad((out * w).sum(), xr)
    xs = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((torch.sigmoid(4.0 * xs) * w).sum(), xs)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert torch.allclose(gx, ref, rtol=tol, atol=tol)
    assert abs(float(gx.view(-1)[0] / w.view(-1)[0]) - 1.0) < tol   # peak 4 * 1/4 at x = 0
    # another alpha
    xr2 = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(spike(xr2, "sigmoid", 2.0).sum(), xr2)
    xs2 = x.clone().requires_grad_(True)
    (r2,) = torch.autograd.grad(torch.sigmoid(2.0 * xs2).sum(), xs2)
    assert torch.allclose(g2, r2, rtol=tol, atol=tol)


def test_rect_surrogate_gradient():
    width = 0.5
    x = torch.tensor([-1.0, -0.5, -0.4999, -0.1, 0.0, 0.2, 0.4999, 0.5, 3.0], dtype=torch.float64,
                     requires_grad=True)
    out = spike(x, "rect", width)
    assert out.detach().tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    w = torch.arange(1.0, 10.0, dtype=torch.float64)
    (gx,) = torch.autograd.grad((out * w).sum(), x)
    # window |x| < width, open at the ends
    assert gx.tolist() == [0, 0, 3, 4, 5, 6, 7, 0, 0]
    xm = torch.zeros(2, 3, 4, requires_grad=True)
    (gm,) = torch.autograd.grad(spike(xm, "rect", 1.0).sum(), xm)
    assert torch.equal(gm, torch.ones(2, 3, 4))


def test_unknown_surrogate():
    with pytest.raises(ValueError, match="unknown surrogate 'tanh'.*sigmoid"):
        spike(torch.zeros(2), "tanh")


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("lam", [1.0, 0.5, 0.25])
def test_saf_and_lif_local_gradients_agree(surrogate, lam):
    """Eq. (15): d a[t] / d U[t] (a[t-1] held constant) equals d s[t] / d u[t] (u[t-1], s[t-1] held)."""
    theta, T = 1.0, 8
    cur = dyadic_currents(T, (3, 7), seed=11)
    fn = lambda v: spike(v, surrogate, 4.0 if surrogate == "sigmoid" else 0.75)  # noqa: E731
    u = s = None
    U = a = None
    for t in range(T):
        I = cur[t].clone().requires_grad_(True)
        u_new, s_new = lif_step(I, u, s, lam, theta, fn)
        (g_lif,) = torch.autograd.grad(s_new.sum(), I)
        Uv = (cur[t].clone() if U is None else lam * U + cur[t]).requires_grad_(True)
        a_new = saf_step(Uv, a, lam, theta, fn)
        (g_saf,) = torch.autograd.grad(a_new.sum(), Uv)
        assert torch.equal(g_saf, g_lif), t
        assert float(g_lif.abs().sum()) > 0
        u, s, U, a = u_new.detach(), s_new.detach(), Uv.detach(), a_new.detach()


def test_replace_value_and_gradient():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(2, 5, generator=g, dtype=torch.float64) > 0.5).to(torch.float64)
    ahat = torch.rand(2, 5, generator=g, dtype=torch.float64)
    out = replace(s @ w.detach().T, ahat @ w.T)
    assert torch.equal(out.detach(), s @ w.detach().T)
    up = torch.randn(2, 4, generator=g, dtype=torch.float64)
    (gw,) = torch.autograd.grad((out * up).sum(), w)
    assert torch.allclose(gw, up.T @ ahat, rtol=0, atol=1e-14)
    assert not torch.allclose(gw, up.T @ s)
