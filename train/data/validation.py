"""The validation split every trainer holds out of its training set (docs/train.md, "Best checkpoint").

Stratified and seeded: from each class, round(fraction * n_class) samples (at least one when the
fraction is positive and the class has two or more) are drawn by a numpy Generator seeded with the
run's seed and a fixed tag, so the split depends on (labels, fraction, seed) only, never on the
order training happens to draw random numbers in. The test set is never touched. A fraction of 0
holds nothing out (the old behaviour: the best checkpoint is then the last).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from saf.train.data.base import Dataset

VAL_FRACTION = 0.1            # the default share of the training set held out
_SPLIT_TAG = 0x5A1F_0A1       # mixed into the seed: the split's stream is not the training stream


VAL_FRACTION_WANT = "a number in [0, 0.5]"     # what --val-fraction accepts, as error messages say it


def valid_fraction(v) -> bool:
    """Is v a --val-fraction: a real number in [0, 0.5] (JSON/argparse numbers, not bools)?"""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 0.5


def split_indices(y: np.ndarray, fraction: float, seed: int) -> tuple:
    """(train indices, validation indices), both sorted int64 arrays, disjoint, covering range(len(y))."""
    y = np.asarray(y).reshape(-1)
    if not valid_fraction(fraction):
        raise ValueError(f"--val-fraction must be {VAL_FRACTION_WANT}, got {fraction!r}")
    if fraction == 0.0 or len(y) == 0:
        return np.arange(len(y), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([int(seed), _SPLIT_TAG])
    val = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = int(round(fraction * len(members)))
        if k == 0 and len(members) >= 2:
            k = 1
        k = min(k, len(members) - 1)              # every class keeps a training sample
        if k > 0:
            val.append(rng.choice(members, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(y), dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep).astype(np.int64), val_idx


def hold_out(data: Dataset, fraction: float, seed: int, limit_train=None) -> tuple:
    """(data with the held-out samples removed from its training set, x_val, y_val). With
    `limit_train`, the split is taken from the first limit_train training samples."""
    x, y = data.x_train, data.y_train
    if limit_train:
        x, y = x[:limit_train], y[:limit_train]
    tr, va = split_indices(y.numpy(), fraction, seed)
    tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
    rest = copy.copy(data)                   # a Dataset, or any record with these fields (tests pass namespaces)
    rest.x_train, rest.y_train = x[tr_t], y[tr_t]
    return rest, x[va_t], y[va_t]


def val_text(m: dict) -> str:
    """The epoch line's validation column ("val 0.9750  "), empty without a validation split."""
    return f"val {m['val_acc']:.4f}  " if m.get("val_acc") is not None else ""
