"""CIFAR-10 from the official "python version" batches (cifar-10-python.tar.gz, extracted).

Each batch is a Python 2 pickle of a dict {b'data': uint8 [N, 3072] (1024 R, 1024 G, 1024 B,
row-major 32x32), b'labels': [N ints], ...}. The files are read with a numpy-only unpickler
(safe_pickle), never with plain pickle.load. Images are normalized per channel with the CIFAR-10
training-set mean/std; the dataset carries random-crop(4) + horizontal-flip augmentation.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Tuple

import numpy as np
import torch

from saf.train.data.augment import random_crop_flip
from saf.train.data.base import Dataset, DatasetError
from saf.train.data.safe_pickle import RefusedGlobal, safe_loads

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
ARCHIVE = "cifar-10-python.tar.gz"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CROP_PADDING = 4


def resolve_dir(root: str) -> str:
    """`root` itself, or `root/cifar-10-batches-py` when that exists."""
    if not os.path.exists(root):
        raise DatasetError(f"{root}: data root for cifar10 does not exist")
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: data root for cifar10 is not a directory")
    sub = os.path.join(root, BATCH_DIR)
    return sub if os.path.isdir(sub) else root


def _get(d: dict, key: str):
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    return None


def read_batch(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 [N, 3072], int64 [N])."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        obj = safe_loads(raw, encoding="bytes")
    except RefusedGlobal as e:
        raise DatasetError(f"{path}: refused to unpickle, it references {e.module}.{e.name} "
                           f"(a CIFAR-10 batch may only contain numpy arrays and lists)") from None
    except Exception as e:  # noqa: BLE001 - a corrupt stream can fail in pickle or numpy many ways
        raise DatasetError(f"{path}: not a readable CIFAR-10 pickle ({type(e).__name__}: {e})") \
            from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if data is None or labels is None:
        raise DatasetError(f"{path}: dict lacks b'data' and/or b'labels' (keys: "
                           f"{sorted(map(repr, obj.keys()))})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DatasetError(f"{path}: b'data' must be a uint8 numpy array, got "
                           f"{type(data).__name__} {getattr(data, 'dtype', '')}".rstrip())
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DatasetError(f"{path}: b'data' has shape {data.shape}, expected (N, 3072)")
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise DatasetError(f"{path}: b'labels' is not a list of integers ({e})") from None
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: b'labels' must be a flat list of integers, got "
                           f"{y.dtype} with shape {y.shape}")
    if y.shape[0] != data.shape[0]:
        raise DatasetError(f"{path}: {data.shape[0]} images but {y.shape[0]} labels")
    bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
    if bad.size:
        raise DatasetError(f"{path}: label {int(y[bad[0]])} at index {int(bad[0])} is out of range "
                           f"0..{NUM_CLASSES - 1}")
    return data, y.astype(np.int64)


def _normalize(data: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(data).reshape(-1, *IMAGE_SHAPE).to(torch.float32).div_(255.0)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def load_cifar10(root: str) -> Dataset:
    folder = resolve_dir(root)
    wanted = TRAIN_BATCHES + (TEST_BATCH,)
    missing = [n for n in wanted if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        hint = ""
        if os.path.isfile(os.path.join(folder, ARCHIVE)):
            hint = f" (extract {ARCHIVE} first)"
        raise DatasetError(f"{folder}: CIFAR-10 batches missing: {', '.join(missing)}{hint}")
    train = [read_batch(os.path.join(folder, n)) for n in TRAIN_BATCHES]
    xte, yte = read_batch(os.path.join(folder, TEST_BATCH))
    xtr = np.concatenate([d for d, _ in train])
    ytr = np.concatenate([l for _, l in train])
    return Dataset(name="cifar10", x_train=_normalize(xtr), y_train=torch.from_numpy(ytr),
                   x_test=_normalize(xte), y_test=torch.from_numpy(yte), num_classes=NUM_CLASSES,
                   input_shape=IMAGE_SHAPE, input_scale=None,
                   augment=partial(random_crop_flip, padding=CROP_PADDING))
