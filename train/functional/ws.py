"""Scaled weight standardization (sWS, NF-ResNets; used by OTTT/SAF instead of batch norm).

W_hat = gain * gamma * (W - mean(W)) / sqrt(var(W) * fan_in + eps), statistics per output unit.
"""
from __future__ import annotations

import torch


def scaled_ws(weight: torch.Tensor, gain: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Standardize `weight` ([out, ...]) per output unit; gain has shape [out] (broadcast)."""
    w = weight.reshape(weight.shape[0], -1)
    fan_in = w.shape[1]
    mean = w.mean(dim=1, keepdim=True)
    var = w.var(dim=1, unbiased=False, keepdim=True)
    w_hat = (w - mean) * torch.rsqrt(var * fan_in + eps)
    w_hat = w_hat * (gain.reshape(-1, 1) * gamma)
    return w_hat.reshape(weight.shape)
