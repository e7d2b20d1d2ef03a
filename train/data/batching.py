"""Minibatch iteration over in-memory tensors."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch

from saf.core.counts import check_count


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: Optional[torch.Generator] = None,
            drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x_batch, y_batch) pairs covering x and y once.

    With shuffle=True the order is a permutation drawn from `generator` (same generator state,
    same order); the last batch may be smaller unless drop_last=True.
    """
    check_count("batch_size", batch_size)
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise ValueError(f"x has {n} samples but y has {int(y.shape[0])}")
    if shuffle:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gen_device).to(x.device)
    else:
        order = None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            yield x[start:end], y[start:end]
        else:
            idx = order[start:end]
            yield x[idx], y[idx.to(y.device)]
