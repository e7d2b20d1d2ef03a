"""Heaviside spike with surrogate gradients (pure functions over tensors of any shape).

Convention for the whole toolchain: fire at equality, H(x) = 1 if x >= 0 (as the reference OTTT
code). Integer backends compare `v >= TH`, which on a strict-`>` machine is `v > TH - 1`.
"""
from __future__ import annotations

import torch

SURROGATES = ("sigmoid", "rect")


class _SigmoidSpike(torch.autograd.Function):
    """H(x) forward; d/dx = alpha * sig(alpha x) * (1 - sig(alpha x)) backward."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad * (ctx.alpha * sg * (1.0 - sg)), None


class _RectSpike(torch.autograd.Function):
    """H(x) forward; d/dx = 1{|x| < width} backward (OTTT's rectangular choice with width = theta)."""

    @staticmethod
    def forward(ctx, x, width):
        ctx.save_for_backward(x)
        ctx.width = width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < ctx.width).to(grad.dtype), None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", alpha: float = 4.0) -> torch.Tensor:
    """Heaviside step of x (fires at x == 0) with the chosen surrogate gradient.

    sigmoid: alpha is the slope (paper default 4). rect: alpha is the half-width of the window.
    """
    if surrogate == "sigmoid":
        return _SigmoidSpike.apply(x, alpha)
    if surrogate == "rect":
        return _RectSpike.apply(x, alpha)
    raise ValueError(f"unknown surrogate {surrogate!r} (known: {', '.join(SURROGATES)})")


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """The forward step alone (no graph): 1 where x >= 0."""
    return (x >= 0).to(x.dtype)
