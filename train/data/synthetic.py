"""Synthetic classification data of any shape, for benchmarks and smoke runs.

Every class has a random template in [0, 1]; a sample is its class template plus Gaussian noise,
clipped to [0, 1] and rounded to a multiple of 1/255 (so, like MNIST, input_scale = 255). The
class signal is learnable by any of the toolchain's networks; everything is a function of `seed`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from saf.train.data.base import Dataset, DatasetError

LEVELS = 255


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"synthetic: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _samples(templates: torch.Tensor, n: int, classes: int, noise: float,
             gen: torch.Generator) -> tuple:
    y = torch.arange(n, dtype=torch.int64) % classes          # balanced classes
    y = y[torch.randperm(n, generator=gen)]
    x = templates[y] + noise * torch.randn((n,) + tuple(templates.shape[1:]), generator=gen)
    x = torch.round(x.clamp_(0.0, 1.0) * LEVELS) / LEVELS
    return x.to(torch.float32), y


def load_synthetic(seed: int = 0, shape: Sequence[int] = (1, 8, 8), classes: int = 10,
                   n_train: int = 512, n_test: int = 128, noise: float = 0.3) -> Dataset:
    """shape is (C, H, W) for images or (F,) for tabular data."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise DatasetError(f"synthetic: shape must be (C, H, W) or (F,), got {shape!r}") from None
    if len(shape) not in (1, 3):
        raise DatasetError(f"synthetic: shape must be (C, H, W) or (F,), got {shape!r}")
    for d in shape:
        _check_int("every shape dimension", d, 1)
    classes = _check_int("classes", classes, 2)
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
        raise DatasetError(f"synthetic: noise must be a number >= 0, got {noise!r}")
    gen = torch.Generator().manual_seed(int(seed))
    templates = torch.rand((classes,) + shape, generator=gen)
    xtr, ytr = _samples(templates, n_train, classes, float(noise), gen)
    xte, yte = _samples(templates, n_test, classes, float(noise), gen)
    return Dataset(name="synthetic", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
                   num_classes=classes, input_shape=shape, input_scale=float(LEVELS))
