"""The two forms of one spiking layer (docs/design.md#one-layer-two-forms), as pure functions over tensors.

LIF (deployment) form, SAF paper Eq. (1), subtractive reset, leak after reset:
    u[t] = lam * (u[t-1] - theta * s[t-1]) + I[t],     s[t] = H(u[t] - theta)
SAF (accumulation, training) form, Eq. (4) with the corrected bias coefficient c[t]:
    U[t] = W a_in[t] + b c[t],   a[t] = lam * a[t-1] + H(U[t] - theta * (lam * a[t-1] + 1))
Linked by Eq. (5): u[t] = U[t] - theta*lam*a[t-1] and s[t] = a[t] - lam*a[t-1].
Any shape (dense [N, n] or conv [N, C, H, W]); `None` stands for the zero initial state.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from saf.train.functional.surrogate import spike, surrogate_grad
from saf.core.neuron_modes import RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED, RESET_ZERO, RESETS

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def bias_coeff(t: int, lam: float) -> float:
    """c[t] = sum_{k=0}^{t-1} lam^k for t >= 1 (c[1] = 1); the paper's Eq. (4) misprints this.

    Computed by the recursion c[t] = lam * c[t-1] + 1 (not the closed form (1 - lam^t) / (1 - lam),
    which rounds differently), the same accumulation the LIF form performs on a constant input.
    """
    if t < 1:
        raise ValueError(f"time steps start at 1, got t={t}")
    c = 0.0
    for _ in range(t):
        c = lam * c + 1.0
    return c



def train_rate(x, lam: float):
    """A train x [B, T, ...]'s weighted average rate sum_t lam^(T-t) x[t] / c[T]: the rate-domain input
    of a spike-train-fed network (the accumulation a_in[t] = lam a_in[t-1] + x[t] every layer uses)."""
    T, acc = x.shape[1], None
    for t in range(T):
        acc = x[:, t] if acc is None else lam * acc + x[:, t]
    return acc / bias_coeff(T, lam)

def lif_potential(current: torch.Tensor, u_prev: Optional[torch.Tensor], s_prev: Optional[torch.Tensor],
                  lam: float, theta: float, reset: str = RESET_SUBTRACT) -> torch.Tensor:
    """u[t] of one LIF step from u[t-1] (before its reset), s[t-1] and the current I[t].

    reset (core/neuron_modes.py): "subtract" u = lam (u' - theta s') + I (the default), "subtract-undecayed"
    u = lam u' - theta s' + I, "zero" u = lam u' (1 - s') + I."""
    if u_prev is None:
        return current
    if reset == RESET_SUBTRACT:
        return lam * (u_prev - theta * s_prev) + current
    if reset == RESET_SUBTRACT_UNDECAYED:
        return lam * u_prev - theta * s_prev + current
    if reset == RESET_ZERO:
        return lam * (u_prev * (1.0 - s_prev)) + current
    raise ValueError(f"unknown reset {reset!r} (known: {', '.join(RESETS)})")


def lif_step(current: torch.Tensor, u_prev: Optional[torch.Tensor], s_prev: Optional[torch.Tensor],
             lam: float, theta: float, spike_fn: SpikeFn, reset: str = RESET_SUBTRACT):
    """One LIF step. Returns (u[t], s[t]). The caller decides whether u_prev/s_prev carry a graph.
    The reset is `lif_potential`'s; the compare is spike_fn's (strict or not)."""
    u = lif_potential(current, u_prev, s_prev, lam, theta, reset)
    return u, spike_fn(u - theta)


def saf_step(U: torch.Tensor, a_prev: Optional[torch.Tensor], lam: float, theta: float,
             spike_fn: SpikeFn) -> torch.Tensor:
    """One SAF step: a[t] = lam*a[t-1] + H(U[t] - theta*(lam*a[t-1] + 1))."""
    if a_prev is None:
        return spike_fn(U - theta)
    la = lam * a_prev
    return la + spike_fn(U - theta * (la + 1.0))


class _SAFStep(torch.autograd.Function):
    """`saf_step` as one autograd node: the same ops in the same order (bit-identical forward and
    gradient), done in place in two buffers, saving only x = U - theta*(lam*a[t-1] + 1) for the
    surrogate. a[t-1] is a constant here (SAF carries it detached), so it gets no gradient."""

    @staticmethod
    def forward(ctx, U, a_prev, lam, theta, surrogate, surrogate_slope):
        if a_prev is None:
            x = torch.sub(U, theta)
            a = (x >= 0).to(U.dtype)
        else:
            a = torch.mul(a_prev, lam)                # la = lam * a[t-1]
            x = torch.add(a, 1.0)
            x.mul_(theta)                             # theta * (la + 1)
            torch.sub(U, x, out=x)                    # U - theta * (la + 1)
            a.add_(x >= 0)                            # la + H(x)
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.surrogate_slope = surrogate, surrogate_slope
        return a

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return surrogate_grad(x, grad, ctx.surrogate, ctx.surrogate_slope), None, None, None, None, None


def saf_step_fused(U: torch.Tensor, a_prev: Optional[torch.Tensor], lam: float, theta: float,
                   surrogate: str = "sigmoid", surrogate_slope: float = 4.0) -> torch.Tensor:
    """`saf_step` with `spike(., surrogate, surrogate_slope)`, bit for bit, in fewer passes and buffers (what
    SpikingNet trains with). Falls back to `saf_step` when a[t-1] itself needs a gradient."""
    if a_prev is not None and a_prev.requires_grad and torch.is_grad_enabled():
        return saf_step(U, a_prev, lam, theta, lambda v: spike(v, surrogate, surrogate_slope))
    if U.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"saf_step_fused needs a floating-point U, got {U.dtype}")
    return _SAFStep.apply(U, a_prev, lam, theta, surrogate, surrogate_slope)


def saf_spikes(a: torch.Tensor, a_prev: Optional[torch.Tensor], lam: float) -> torch.Tensor:
    """Eq. (5): s[t] = a[t] - lam*a[t-1]."""
    return a if a_prev is None else a - lam * a_prev


def saf_potential(U: torch.Tensor, a_prev: Optional[torch.Tensor], lam: float, theta: float) -> torch.Tensor:
    """Eq. (5): u[t] = U[t] - theta*lam*a[t-1]."""
    return U if a_prev is None else U - theta * lam * a_prev


def trace_step(s: torch.Tensor, a_prev: Optional[torch.Tensor], lam: float) -> torch.Tensor:
    """Presynaptic trace / spike accumulation: a[t] = lam*a[t-1] + s[t]."""
    return s if a_prev is None else lam * a_prev + s
