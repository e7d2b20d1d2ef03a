"""Synaptic connections: Linear/Conv2d with optional scaled weight standardization, the linear glue
(avg pooling, global average pooling, flatten) in front of them, and a separate bias."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from saf.train.functional.glue import apply_glue
from saf.train.functional.ws import scaled_ws


@dataclass(frozen=True)
class Wiring:
    """A synapse's shape: kind ("conv" or "linear"), input channels/features, outputs, conv kernel/stride/padding."""
    kind: str
    n_in: int
    n_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0


class Synapse(nn.Module):
    """W applied to (glued) input. Bias is held here but added by the caller (the SAF form scales
    it by c[t]); `effective_weight()` is what the network computes with and what export folds."""

    def __init__(self, wiring: Wiring, pre: list = (), ws: bool = True, gamma: float = 1.0, bias: bool = True):
        super().__init__()
        kind, n_in, n_out, kernel = wiring.kind, wiring.n_in, wiring.n_out, wiring.kernel
        stride, padding = wiring.stride, wiring.padding
        self.kind, self.stride, self.padding, self.pre = kind, stride, padding, list(pre)
        self.ws, self.gamma = ws, gamma
        shape = (n_out, n_in, kernel, kernel) if kind == "conv" else (n_out, n_in)
        self.weight = nn.Parameter(torch.empty(shape))
        fan_in = n_in * (kernel * kernel if kind == "conv" else 1)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.gain = nn.Parameter(torch.ones(n_out)) if ws else None
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def effective_weight(self) -> torch.Tensor:
        if self.ws:
            return scaled_ws(self.weight, self.gain, self.gamma)
        return self.weight

    def forward(self, x: torch.Tensor, weight: torch.Tensor = None) -> torch.Tensor:
        """W x (no bias). Pass a precomputed effective weight to avoid recomputing it per step."""
        w = self.effective_weight() if weight is None else weight
        x = apply_glue(x, self.pre)
        if self.kind == "conv":
            return F.conv2d(x, w, None, self.stride, self.padding)
        return F.linear(x, w)

    def bias_term(self, c: float = 1.0):
        """b * c shaped to broadcast over [N, C, H, W] or [N, n]; 0 when there is no bias."""
        if self.bias is None:
            return 0.0
        b = self.bias * c if c != 1.0 else self.bias
        return b.view(1, -1, 1, 1) if self.kind == "conv" else b.view(1, -1)
