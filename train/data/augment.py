"""Batch image augmentation, vectorized and driven only by an explicit torch.Generator."""
from __future__ import annotations

import torch


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding, plus random horizontal flip, independently per sample.

    x is [N, C, H, W]. Each sample is padded with `padding` zeros on every side (zero in the
    tensor's own units: for normalized CIFAR that is the mean colour), a window of the original
    size is cut at a uniformly random offset in [0, 2*padding] along each axis, and mirrored
    left-right with probability 1/2. The same generator state gives the same result.
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects [N, C, H, W], got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    dev = generator.device
    offs = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=dev).to(x.device)
    flips = (torch.rand(n, generator=generator, device=dev) < 0.5).to(x.device)
    if n == 0:
        return x.clone()
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = offs[0][:, None] + torch.arange(h, device=x.device)              # [N, H]
    cols = offs[1][:, None] + torch.arange(w, device=x.device)              # [N, W]
    if flip:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices separated by a slice: the indexed dims come first -> [N, H, W, C].
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
