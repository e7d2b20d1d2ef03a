"""OTTT's gradient substitution: forward value from one expression, gradient through another.

replace(value, grad_path) returns `value` exactly (bit for bit) while backpropagating the incoming
gradient into `grad_path`. OTTT uses it so the forward pass sees W s[t] while the weight gradient
is formed with the presynaptic trace a_hat[t] (W a_hat[t]). SAF uses it only at the non-spiking
readout, whose forward value must be W s_N[t] + b for the LIF form to match.
"""
from __future__ import annotations

import torch


class _Replace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, grad_path):
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def replace(value: torch.Tensor, grad_path: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        value = value.detach()
    return _Replace.apply(value, grad_path)
