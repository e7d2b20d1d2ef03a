"""The papers' loss: (1 - a) * CE + a * MSE against one-hot targets (a = 0.05)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_mse_loss(logits: torch.Tensor, y: torch.Tensor, mse_weight: float = 0.05) -> torch.Tensor:
    ce = F.cross_entropy(logits, y)
    if mse_weight == 0.0:
        return ce
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return (1.0 - mse_weight) * ce + mse_weight * F.mse_loss(logits, onehot)
