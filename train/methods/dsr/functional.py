"""DSR (Meng et al., CVPR 2022; docs/methods.md#dsr) as pure functions: the spiking neuron with alpha
firing, the spike representation, the clamp mapping it is differentiated through, and the closed
forms of Eqs. 18/21. Written against the project's LIF form (leak after a subtractive reset):

    u[t] = lam (u[t-1] - V s[t-1]) + I[t],   s[t] = H(u[t] - alpha V),   u[0] = 0 (s[0] = 0)

Spikes carry the value V of the layer that emits them (the next layer's current is W (V s) + b).
Representation (weighted firing rate times V; IF: lam = 1, the plain rate):

    a = V sum_t lam^(T-t) s[t] / c[T],   c[T] = sum_{k<T} lam^k

and the mapping DSR differentiates through (Props. 1/2 in the project's form, no dt):
    a ~= clamp(Ihat, 0, V),  Ihat = sum_t lam^(T-t) I[t] / c[T]  (= W a_in + b, by linearity)
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional

import torch


def neuron_step(current: torch.Tensor, u_prev: Optional[torch.Tensor], s_prev: Optional[torch.Tensor],
                lam: float, vth: torch.Tensor, alpha: float) -> tuple:
    """One step: (u[t], s[t]) with s fired at u >= alpha V and reset by V (the full threshold)."""
    u = current if u_prev is None else lam * (u_prev - vth * s_prev) + current
    return u, (u >= alpha * vth).to(current.dtype)


def clamp_map(current_mean: torch.Tensor, vth: torch.Tensor) -> torch.Tensor:
    """clamp(Ihat, 0, V) with torch's gradient: 1 on [0, V] for Ihat, 1 where Ihat > V for V (Eq. 19)."""
    return torch.minimum(torch.clamp(current_mean, min=0.0), vth)


def if_rate_closed_form(current: Fraction, N: int, vth: Fraction, alpha: Fraction) -> Fraction:
    """DSR Eqs. 18 (alpha = 1: floor) and 21 (alpha = 1/2: round half up) for an IF neuron with a
    constant input current: a[N] = (V/N) clamp(floor(N I / V + 1 - alpha), 0, N)."""
    k = math.floor(N * current / vth + 1 - alpha)
    return vth / N * min(max(k, 0), N)


def if_rate_simulated(current: Fraction, N: int, vth: Fraction, alpha: Fraction) -> Fraction:
    """The same neuron simulated step by step in exact rationals: V sum_t s[t] / N."""
    u, s, count = Fraction(0), 0, 0
    for _ in range(N):
        u = u - vth * s + current
        s = 1 if u >= alpha * vth else 0
        count += s
    return vth * count / N
