"""N-MNIST (Orchard et al. 2015) from its distributed folders: ROOT/Train/<digit>/*.bin, ROOT/Test/<digit>/*.bin.

Each .bin file is one recording, a sequence of 5-byte (40-bit) events, big-endian bit order:
  byte 0: x address (bits 39-32), byte 1: y address (bits 31-24),
  byte 2: bit 7 polarity (1 ON, 0 OFF), bits 6-0 timestamp bits 22-16,
  bytes 3-4: timestamp bits 15-0 (microseconds).
(the layout of the dataset's Read_Ndataset.m and of tonic.io.read_mnist_file). Sensor 34x34.
An event with y == 240 is a timestamp-overflow marker (as in tonic and the dataset's eventvision.py):
every later timestamp is advanced by 2^13 and the marker itself is dropped.
"""
from __future__ import annotations

import os

import numpy as np

from saf.train.data.base import Dataset, DatasetError
from saf.train.data.events.binning import Events, bin_events, check_events, frames_dataset

WIDTH = HEIGHT = 34
OVERFLOW_Y, OVERFLOW_STEP = 240, 1 << 13
SPLITS = {"train": "Train", "test": "Test"}


def decode_nmnist(raw: bytes, path="<bytes>") -> Events:
    if len(raw) % 5:
        raise DatasetError(f"{path}: {len(raw)} bytes is not a whole number of 5-byte N-MNIST events")
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    marker = b[:, 1] == OVERFLOW_Y
    t = t + np.cumsum(marker) * OVERFLOW_STEP                  # markers advance every later event
    keep = ~marker
    return check_events(Events(x=b[keep, 0], y=b[keep, 1], t=t[keep], p=b[keep, 2] >> 7), HEIGHT, WIDTH, path)


def encode_nmnist(ev: Events) -> bytes:
    """The inverse of decode_nmnist (tests write files in the published format with it)."""
    t = np.asarray(ev.t, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-MNIST timestamps are 23-bit")
    out = np.stack([ev.x, ev.y, (np.asarray(ev.p) != 0) * 0x80 | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    return out.astype(np.uint8).tobytes()


def read_nmnist_file(path: str) -> Events:
    try:
        with open(path, "rb") as f:
            return decode_nmnist(f.read(), path)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None


def _split(root: str, folder: str, T: int, bin_by: str) -> tuple:
    top = os.path.join(root, folder)
    if not os.path.isdir(top):
        raise DatasetError(f"{top}: missing N-MNIST folder (expected {root}/Train/<digit>/*.bin and "
                           f"{root}/Test/<digit>/*.bin)")
    frames, labels = [], []
    for digit in range(10):
        d = os.path.join(top, str(digit))
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".bin"):
                ev = read_nmnist_file(os.path.join(d, name))
                frames.append(bin_events(ev, T, HEIGHT, WIDTH, bin_by))
                labels.append(digit)
    return frames, labels


def load_nmnist(root: str, T: int, bin_by: str = "time") -> Dataset:
    return frames_dataset("nmnist", _split(root, SPLITS["train"], T, bin_by),
                          _split(root, SPLITS["test"], T, bin_by), 10, T, HEIGHT, WIDTH)
