"""The Yin-Yang data set (Kriener, Göltz, Petrovici 2021), generated from its published definition.

Points (x, y) uniform in [0, 2 r_big]^2, kept inside the big circle (radius r_big = 0.5 around
(r_big, r_big)); the class of a kept point (d_r, d_l: distances to the right dot (1.5 r_big, r_big)
and the left dot (0.5 r_big, r_big), r_small = 0.1):
    dot (2)  if d_r < r_small or d_l < r_small
    yin (0)  if d_r <= r_small or r_small < d_l <= r_big/2 or (y > r_big and d_r > r_big/2)
    yang (1) otherwise.
Classes are balanced by rejection sampling: each sample first draws its goal class uniformly, then
draws points until one of that class comes. Features (x, y, 1 - x, 1 - y). Deterministic: numpy
RandomState(seed), train seed 42 (5000 samples) and test seed 40 (1000), the reference generator's
seeds for its train and test sets (the draws are written here, so the points need not be the same
as the reference's).
"""
from __future__ import annotations

import numpy as np
import torch

from saf.train.data.base import Dataset

R_SMALL = 0.1
R_BIG = 0.5
TRAIN_SEED, TRAIN_SIZE = 42, 5000
TEST_SEED, TEST_SIZE = 40, 1000


def yinyang_class(x: float, y: float, r_small: float = R_SMALL, r_big: float = R_BIG) -> int:
    d_r = np.hypot(x - 1.5 * r_big, y - r_big)
    d_l = np.hypot(x - 0.5 * r_big, y - r_big)
    if d_r < r_small or d_l < r_small:
        return 2
    yin = d_r <= r_small or (r_small < d_l <= 0.5 * r_big) or (y > r_big and d_r > 0.5 * r_big)
    return 0 if yin else 1


def generate(size: int, seed: int, r_small: float = R_SMALL, r_big: float = R_BIG) -> tuple:
    """(features [size, 4] float64, labels [size] int64)."""
    rng = np.random.RandomState(seed)
    feats, labels = [], []
    for _ in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if np.hypot(x - r_big, y - r_big) > r_big:
                continue
            c = yinyang_class(x, y, r_small, r_big)
            if c == goal:
                break
        feats.append((x, y, 1.0 - x, 1.0 - y))
        labels.append(c)
    return np.asarray(feats, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def load_yinyang_dataset() -> Dataset:
    xtr, ytr = generate(TRAIN_SIZE, TRAIN_SEED)
    xte, yte = generate(TEST_SIZE, TEST_SEED)
    return Dataset(name="yinyang", x_train=torch.from_numpy(xtr.astype(np.float32)), y_train=torch.from_numpy(ytr),
                   x_test=torch.from_numpy(xte.astype(np.float32)), y_test=torch.from_numpy(yte), num_classes=3,
                   input_shape=(4,), input_scale=None)


def load_xor_dataset() -> Dataset:
    """The four XOR patterns (bits as 0.0/1.0), label = a xor b; the test set is the same four."""
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float32)
    y = torch.tensor([0, 1, 1, 0], dtype=torch.int64)
    return Dataset(name="xor", x_train=x, y_train=y, x_test=x.clone(), y_test=y.clone(), num_classes=2,
                   input_shape=(2,), input_scale=1.0)
