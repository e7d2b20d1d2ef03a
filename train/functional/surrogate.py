"""Heaviside spike with surrogate gradients (pure functions over tensors of any shape).

Convention for the whole toolchain: fire at equality, H(x) = 1 if x >= 0 (as the reference OTTT
code). Integer backends compare `v >= TH`, which on a strict-`>` machine is `v > TH - 1`. A layer whose
spec says "compare": ">" (core/neuron_modes.py) fires strictly, H(x) = 1 if x > 0 (`strict=True`); the
surrogate gradient is the same function of x either way.
"""
from __future__ import annotations

import torch

SURROGATES = ("sigmoid", "rect")


def sigmoid_surrogate_grad(x: torch.Tensor, grad: torch.Tensor, slope: float) -> torch.Tensor:
    """grad * (slope * sg * (1 - sg)) with sg = sigmoid(slope * x), bit for bit, in two buffers
    instead of six (the same ops in the same order, done in place; multiplication commutes exactly)."""
    sg = torch.mul(x, slope)
    sg.sigmoid_()
    one_minus = torch.rsub(sg, 1.0)
    sg.mul_(slope)
    sg.mul_(one_minus)
    if sg.shape == grad.shape:
        return sg.mul_(grad)
    return grad * sg


def rect_surrogate_grad(x: torch.Tensor, grad: torch.Tensor, width: float) -> torch.Tensor:
    return grad * (x.abs() < width).to(grad.dtype)


def surrogate_grad(x: torch.Tensor, grad: torch.Tensor, surrogate: str, slope: float) -> torch.Tensor:
    """d spike(x) / dx applied to the incoming gradient (the backward of `spike`)."""
    if surrogate == "sigmoid":
        return sigmoid_surrogate_grad(x, grad, slope)
    if surrogate == "rect":
        return rect_surrogate_grad(x, grad, slope)
    raise ValueError(f"unknown surrogate {surrogate!r} (known: {', '.join(SURROGATES)})")


class _SigmoidSpike(torch.autograd.Function):
    """H(x) forward; d/dx = slope * sig(slope x) * (1 - sig(slope x)) backward."""

    @staticmethod
    def forward(ctx, x, slope, strict=False):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return heaviside(x, strict)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return sigmoid_surrogate_grad(x, grad, ctx.slope), None, None


class _RectSpike(torch.autograd.Function):
    """H(x) forward; d/dx = 1{|x| < width} backward (OTTT's rectangular choice with width = theta)."""

    @staticmethod
    def forward(ctx, x, width, strict=False):
        ctx.save_for_backward(x)
        ctx.width = width
        return heaviside(x, strict)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return rect_surrogate_grad(x, grad, ctx.width), None, None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", slope: float = 4.0, strict: bool = False) -> torch.Tensor:
    """Heaviside step of x (fires at x == 0; not with strict=True) with the chosen surrogate gradient.

    sigmoid: slope is the surrogate's slope (paper default 4). rect: it is the half-width of the window.
    """
    if surrogate == "sigmoid":
        return _SigmoidSpike.apply(x, slope, strict)
    if surrogate == "rect":
        return _RectSpike.apply(x, slope, strict)
    raise ValueError(f"unknown surrogate {surrogate!r} (known: {', '.join(SURROGATES)})")


def heaviside(x: torch.Tensor, strict: bool = False) -> torch.Tensor:
    """The forward step alone (no graph): 1 where x >= 0 (x > 0 with strict=True)."""
    return ((x > 0) if strict else (x >= 0)).to(x.dtype)
