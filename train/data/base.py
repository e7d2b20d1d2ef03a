"""The in-memory dataset record every loader returns, and the one error type loaders raise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from saf.core.errors import SafError


class DatasetError(SafError):
    """A dataset cannot be loaded; the message is one line naming the path (or dataset) and the fault."""


@dataclass
class Dataset:
    """A fully loaded train/test split.

    x_* are float32 (images [N, C, H, W], tabular [N, F]); y_* are int64 class indices.
    `input_scale`, when not None, promises that `x * input_scale` is an exact integer in
    [0, 2^bits) for every sample (digits: 16.0, MNIST: 255.0), so the exporter can quantize the
    input without loss. `augment(x_batch, generator)` is applied to training batches only.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple
    input_scale: Optional[float]
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None
    time_steps: Optional[int] = None     # set: x_* are trains/frames [N, T, *input_shape], x[t] per step

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(f"dataset {self.name}: x_{split} must be float32 and y_{split} "
                                 f"int64, got {x.dtype} and {y.dtype}")
            want = self.input_shape if self.time_steps is None else (int(self.time_steps), *self.input_shape)
            if tuple(x.shape[1:]) != want:
                raise ValueError(f"dataset {self.name}: x_{split} has per-sample shape "
                                 f"{tuple(x.shape[1:])}, expected {want}")
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"dataset {self.name}: y_{split} shape {tuple(y.shape)} does not "
                                 f"match {x.shape[0]} samples")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"dataset {self.name}: y_{split} has labels outside "
                                 f"[0, {self.num_classes})")

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])
