"""Datasets bundled with scikit-learn (no download): digits (8x8 images) and iris (tabular).

Both use a fixed stratified split (random_state=0) that does not depend on the training seed, so
every run, export and verification sees the same test set.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

from saf.train.data.base import Dataset

DIGITS_TEST_SIZE = 360
IRIS_TEST_SIZE = 30
SPLIT_STATE = 0


def _split(x: np.ndarray, y: np.ndarray, test_size: int):
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=SPLIT_STATE)


def load_digits_dataset() -> Dataset:
    """1,797 8x8 grey images with integer pixels 0..16: x = pixels / 16, [N, 1, 8, 8]."""
    bunch = load_digits()
    pixels = bunch.data.astype(np.int64)  # exact small integers stored as float64
    labels = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = _split(pixels, labels, DIGITS_TEST_SIZE)

    def to_x(p: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(p.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)

    return Dataset(name="digits", x_train=to_x(xtr), y_train=torch.from_numpy(ytr),
                   x_test=to_x(xte), y_test=torch.from_numpy(yte), num_classes=10,
                   input_shape=(1, 8, 8), input_scale=16.0)


def load_iris_dataset() -> Dataset:
    """150 samples, 4 features standardized with the training split's mean and std, [N, 4]."""
    bunch = load_iris()
    feats = bunch.data.astype(np.float64)
    labels = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = _split(feats, labels, IRIS_TEST_SIZE)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)

    def to_x(f: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((f - mean) / std).astype(np.float32))

    return Dataset(name="iris", x_train=to_x(xtr), y_train=torch.from_numpy(ytr),
                   x_test=to_x(xte), y_test=torch.from_numpy(yte), num_classes=3,
                   input_shape=(4,), input_scale=None)
