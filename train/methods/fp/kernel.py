"""FP's two-state (CUBA) neuron kernels, numerically stable for near-equal time constants (docs/methods.md#fp-neuron).

The neuron: synaptic current I with rate alpha (dI/dt = -alpha I, an input spike of weight w adds w),
membrane V with rate beta (dV/dt = -beta V + I, an own spike subtracts theta). A unit input at 0 gives

    h(t)  = (e^{-alpha t} - e^{-beta t}) / (beta - alpha) = e^{-beta t} phi(beta - alpha, t)
    h'(t) = (beta e^{-beta t} - alpha e^{-alpha t}) / (beta - alpha) = e^{-alpha t} - beta h(t)

with phi(d, t) = expm1(d t) / d (= t at d = 0). The expm1 form has no cancellation when alpha ~ beta
(Yin-Yang: 0.999, 1.0), and alpha == beta is its exact limit h = t e^{-alpha t}; nothing is refused.
"""
from __future__ import annotations

import numpy as np

# |beta - alpha| * t below this counts as "near-equal time constants" (the subtraction form would lose
# more than half the digits: e^{-alpha t} - e^{-beta t} ~ |d| t e^{-beta t}); the expm1 form is used always,
# this only decides what is logged
NEAR_EQUAL = 1e-3


def phi(d: float, t):
    """expm1(d t) / d, its limit t at d == 0."""
    t = np.asarray(t, dtype=np.float64)
    if d == 0.0:
        return t.copy()
    return np.expm1(d * t) / d


def h(alpha: float, beta: float, t):
    """The PSP kernel h(t) for t >= 0 (callers mask t < 0)."""
    t = np.asarray(t, dtype=np.float64)
    return np.exp(-beta * t) * phi(beta - alpha, t)


def h_prime(alpha: float, beta: float, t):
    """dh/dt = e^{-alpha t} - beta h(t)."""
    t = np.asarray(t, dtype=np.float64)
    return np.exp(-alpha * t) - beta * h(alpha, beta, t)


def near_equal(alpha: float, beta: float, horizon: float) -> bool:
    """True when the rates are so close that e^{-alpha t} - e^{-beta t} would cancel over the horizon."""
    return abs(beta - alpha) * max(horizon, 1.0) < NEAR_EQUAL


def propagate(alpha: float, beta: float, I, V, tau):
    """The state (I, V) after tau >= 0 without events (closed form)."""
    ea = np.exp(-alpha * tau)
    return I * ea, V * np.exp(-beta * tau) + I * h(alpha, beta, tau)


def critical_time(alpha: float, beta: float, I, V):
    """tau_c >= 0 where dV/dtau = 0 (at most one), np.inf where there is none.

    V(tau) = A e^{-alpha tau} + B e^{-beta tau} with A = I/d, B = V - I/d (d = beta - alpha); V' = 0 at
    e^{d tau} = -beta B / (alpha A) = (beta/alpha)(1 - d V / I), so
    tau_c = [log1p(d/alpha) + log1p(-d V / I)] / d, whose d -> 0 limit is 1/alpha - V/I."""
    I = np.asarray(I, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    d = beta - alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        r = V / I
        if d == 0.0:
            tc = 1.0 / alpha - r
        else:
            arg = -d * r
            ok = arg > -1.0
            tc = np.where(ok, (np.log1p(d / alpha) + np.log1p(np.where(ok, arg, 0.0))) / d, np.inf)
        tc = np.where((I != 0.0) & np.isfinite(tc) & (tc > 0.0), tc, np.inf)
    return tc
