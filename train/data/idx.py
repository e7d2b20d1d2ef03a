"""MNIST and Fashion-MNIST from the original IDX files (plain or gzipped).

IDX layout (big-endian): a 4-byte magic 0x00 0x00 <type> <ndim>, then ndim uint32 dimensions, then
the data. MNIST uses type 0x08 (unsigned byte): images have magic 0x00000803 (N, rows, cols) and
labels 0x00000801 (N,). Gzip is detected from the content, so a file named .gz that a browser
already unpacked (or the reverse) still reads.
"""
from __future__ import annotations

import os
import zlib
from functools import partial
from typing import List, Optional, Tuple

import numpy as np
import torch

from saf.train.data.augment import random_crop_flip
from saf.train.data.base import Dataset, DatasetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10
SHIFT_PADDING = 2                # training augmentation: random shifts of up to 2 pixels (no flips: digits)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Each file is also looked for with a dot before "idx" (train-images.idx3-ubyte, a common
# redistribution) and gzipped (.gz), in this order.
# torchvision's download layout, searched after `root` itself.
TORCHVISION_DIRS = {"mnist": os.path.join("MNIST", "raw"),
                    "fashion-mnist": os.path.join("FashionMNIST", "raw")}
_GZIP_MAGIC = b"\x1f\x8b"



def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """The IDX file of a uint8 array (magic IMAGES_MAGIC for [N, rows, cols], LABELS_MAGIC for [N])."""
    import struct
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) \
        + arr.astype(np.uint8).tobytes()

def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(path, data)
    return data


def _gunzip(path: str, data: bytes) -> bytes:
    """Decompress every gzip member, insisting on each member's trailer (CRC and length)."""
    parts = []
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            parts.append(d.decompress(data))
        except zlib.error as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
        if not d.eof:
            raise DatasetError(f"{path}: truncated gzip data (stream ends before its trailer)")
        data = d.unused_data.lstrip(b"\x00")  # gzip allows zero padding between members
    return b"".join(parts)


def read_idx(path: str, expected_magic: int) -> np.ndarray:
    """Parse one unsigned-byte IDX file; returns a uint8 array shaped as its header says."""
    data = _read_bytes(path)
    kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DatasetError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                           f"(IDX {kind} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes, need {header} for "
                           f"{ndim} dimensions)")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) if dims else 1
    payload = len(data) - header
    if payload < expected:
        raise DatasetError(f"{path}: truncated data, header says {dims} = {expected} bytes but "
                           f"only {payload} follow")
    if payload > expected:
        raise DatasetError(f"{path}: {payload - expected} unexpected bytes after the {expected} "
                           f"bytes of data the header {dims} describes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def name_variants(name: str) -> Tuple[str, ...]:
    """The file names one IDX file may have: "train-images-idx3-ubyte", "train-images.idx3-ubyte",
    each plain or ".gz"."""
    stem, _, tail = name.rpartition("-idx")
    dotted = f"{stem}.idx{tail}"
    return (name, name + ".gz", dotted, dotted + ".gz")


def _find(name: str, dirs: List[str]) -> Tuple[Optional[str], List[str]]:
    looked = []
    for d in dirs:
        for candidate in name_variants(name):
            path = os.path.join(d, candidate)
            looked.append(path)
            if os.path.isfile(path):
                return path, looked
    return None, looked


def _load_split(dataset: str, root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    dirs = [root]
    extra = os.path.join(root, TORCHVISION_DIRS[dataset])
    if os.path.isdir(extra):
        dirs.append(extra)
    paths = []
    for name in SPLIT_FILES[split]:
        path, looked = _find(name, dirs)
        if path is None:
            raise DatasetError(f"{root}: {dataset} {split} file missing, looked for "
                               + ", ".join(looked))
        paths.append(path)
    img_path, lbl_path = paths
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DatasetError(f"{img_path}: expected 3 dimensions (N, rows, cols), header has "
                           f"{images.ndim}")
    if labels.ndim != 1:
        raise DatasetError(f"{lbl_path}: expected 1 dimension (N,), header has {labels.ndim}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{img_path}: {images.shape[0]} images but {lbl_path} has "
                           f"{labels.shape[0]} labels")
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DatasetError(f"{lbl_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out "
                           f"of range 0..{NUM_CLASSES - 1}")
    return images, labels


def load_idx_dataset(dataset: str, root: str) -> Dataset:
    """`dataset` is "mnist" or "fashion-mnist"; `root` holds the four IDX files."""
    if not os.path.exists(root):
        raise DatasetError(f"{root}: data root for {dataset} does not exist")
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: data root for {dataset} is not a directory")
    xtr, ytr = _load_split(dataset, root, "train")
    xte, yte = _load_split(dataset, root, "test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DatasetError(f"{root}: {dataset} train images are {xtr.shape[1:]} but test images are "
                           f"{xte.shape[1:]}")

    def to_x(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(a.astype(np.float32))
        return x.div_(255.0).unsqueeze(1)

    def to_y(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    rows, cols = (int(d) for d in xtr.shape[1:])
    return Dataset(name=dataset, x_train=to_x(xtr), y_train=to_y(ytr), x_test=to_x(xte),
                   y_test=to_y(yte), num_classes=NUM_CLASSES, input_shape=(1, rows, cols),
                   input_scale=255.0, augment=partial(random_crop_flip, padding=SHIFT_PADDING, flip=False))
