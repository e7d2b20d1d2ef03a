"""Event streams -> frames: the binning every event-camera reader (nmnist, dvsgesture, cifar10dvs) shares.

An event is (x, y, t, p): pixel column x, row y, timestamp t (microseconds), polarity p (0 OFF, 1 ON).
A recording becomes T frames [T, 2, H, W] (channel = polarity) of event counts, clipped to
COUNT_MAX so the input stays an integer of COUNT_BITS bits (the dataset's input_scale is 1: the
frames are the quantized input x_q[t] itself, bit-exact in every form).

Binning (`bin_by`):
  "time":  bin k holds the events with t0 + k*span/T <= t < t0 + (k+1)*span/T, span = t_last - t0 + 1
           (integer arithmetic: k = ((t - t0) * T) // span)
  "count": bin k holds events i (in file order) with k = (i * T) // n_events (equal numbers per bin)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saf.train.data.base import Dataset, DatasetError

BIN_MODES = ("time", "count")
COUNT_BITS = 4
COUNT_MAX = (1 << COUNT_BITS) - 1


@dataclass(frozen=True)
class Events:
    """One recording: int64 arrays of equal length, in file order."""
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


def check_bin_by(bin_by: str) -> str:
    if bin_by not in BIN_MODES:
        raise DatasetError(f"--bin-by must be one of {', '.join(BIN_MODES)}, got {bin_by!r}")
    return bin_by


def bin_events(ev: Events, T: int, height: int, width: int, bin_by: str = "time") -> np.ndarray:
    """Frames uint8 [T, 2, height, width] of event counts (clipped to COUNT_MAX)."""
    check_bin_by(bin_by)
    frames = np.zeros((int(T), 2, height, width), dtype=np.int64)
    n = len(ev)
    if n:
        if bin_by == "time":
            t0 = int(ev.t.min())
            span = int(ev.t.max()) - t0 + 1
            k = ((ev.t - t0) * int(T)) // span
        else:
            k = (np.arange(n, dtype=np.int64) * int(T)) // n
        np.add.at(frames, (k, (ev.p != 0).astype(np.int64), ev.y, ev.x), 1)
    return np.minimum(frames, COUNT_MAX).astype(np.uint8)


def check_events(ev: Events, height: int, width: int, path) -> Events:
    if len(ev) and (ev.x.min() < 0 or ev.x.max() >= width or ev.y.min() < 0 or ev.y.max() >= height):
        raise DatasetError(f"{path}: event address outside the {width}x{height} sensor "
                           f"(x in [{ev.x.min()}, {ev.x.max()}], y in [{ev.y.min()}, {ev.y.max()}])")
    return ev


def frames_dataset(name: str, train: tuple, test: tuple, num_classes: int, T: int, height: int,
                   width: int) -> Dataset:
    """Dataset of time-varying inputs from (frames list, labels list) per split."""
    def stack(frames, labels, split):
        if not frames:
            raise DatasetError(f"{name}: the {split} split has no recordings")
        x = torch.from_numpy(np.stack(frames).astype(np.float32))
        return x, torch.tensor(labels, dtype=torch.int64)

    xtr, ytr = stack(*train, "train")
    xte, yte = stack(*test, "test")
    return Dataset(name=name, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, num_classes=num_classes,
                   input_shape=(2, height, width), input_scale=1.0, time_steps=int(T))
