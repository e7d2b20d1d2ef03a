"""The IDE feedback synapse: spectral normalisation as in the IDE authors' code (docs/methods.md#ide-spectral-normalisation),
optionally as a ConvTranspose2d (the paper's CIFAR nets).

    W = clamp(g, -1, 1) * V / sigma(V),     sigma(V) = u^T V v     (so ||W||_2 <= 1 up to the estimate)

u, v are persistent buffers, refined by `power_iteration()` once per training minibatch (the trainer
calls it through SpikingNet.power_iterate); g starts at sigma(V_init) from 10 iterations.
`effective_weight()` never iterates: it is a pure function of (g, V, u, v), so the weight the network
trained with is the weight export folds from the stored buffers, bit for bit. For a conv (transposed
or not) the norm is that of the kernel reshaped to a matrix, as torch.nn.utils.spectral_norm computes
it, which does not bound the convolution's operator norm exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from saf.train.functional.glue import apply_glue
from saf.train.modules.synapse import Synapse, Wiring

INIT_ITERATIONS = 10


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm().clamp_min(1e-12)


class SpectralSynapse(Synapse):
    """A bias-free feedback synapse W = clamp(g, -1, 1) V / sigma(V); transposed: ConvTranspose2d."""

    def __init__(self, kind: str, n_in: int, n_out: int, kernel: int = 1, padding: int = 0,
                 transposed: bool = False, stride: int = 1, output_padding: int = 0):
        super().__init__(Wiring(kind, n_in, n_out, kernel, 1, padding), (), ws=False, bias=False)
        self.transposed, self.t_stride, self.output_padding = transposed, stride, output_padding
        if transposed:                                   # ConvTranspose2d's layout [in, out, k, k]
            self.weight = nn.Parameter(self.weight.detach().transpose(0, 1).contiguous())
        m = self._matrix(self.weight.detach())
        self.register_buffer("sn_u", _normalize(torch.randn(m.shape[0])))
        self.register_buffer("sn_v", _normalize(torch.randn(m.shape[1])))
        self.power_iteration(INIT_ITERATIONS)
        with torch.no_grad():
            self.sn_g = nn.Parameter(self._sigma(self.weight).detach().reshape(()))

    def _matrix(self, w: torch.Tensor) -> torch.Tensor:
        """[outputs, everything else], the matrix whose norm is estimated."""
        return (w.transpose(0, 1) if self.transposed else w).flatten(1)

    def _sigma(self, w: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.sn_u, self._matrix(w) @ self.sn_v)

    @torch.no_grad()
    def power_iteration(self, n: int = 1) -> None:
        m = self._matrix(self.weight.detach())
        for _ in range(n):
            self.sn_v.copy_(_normalize(m.t() @ self.sn_u))
            self.sn_u.copy_(_normalize(m @ self.sn_v))

    def effective_weight(self) -> torch.Tensor:
        return self.sn_g.clamp(-1.0, 1.0) * self.weight / self._sigma(self.weight)

    def forward(self, x: torch.Tensor, weight: torch.Tensor = None) -> torch.Tensor:
        if not self.transposed:
            return super().forward(x, weight)
        w = self.effective_weight() if weight is None else weight
        return F.conv_transpose2d(apply_glue(x, self.pre), w, None, self.t_stride, self.padding,
                                  self.output_padding)
