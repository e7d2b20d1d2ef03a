"""Small event recordings written in the datasets' exact published file formats (nothing is downloaded).

write_nmnist_folder: ROOT/Train/<digit>/NNNNN.bin and ROOT/Test/<digit>/NNNNN.bin, 5-byte events.
Each class moves a small blob along its own direction on the 34x34 sensor (ON events at the leading
edge, OFF at the trailing), plus a few noise events, so a small network can learn it.
"""
from __future__ import annotations

import os

import numpy as np

from saf.train.data.events import Events
from saf.train.data.nmnist import encode_nmnist


def class_events(label: int, rng, n_steps: int = 12, duration_us: int = 300_000) -> Events:
    ang = 2 * np.pi * label / 10
    cx, cy = 17 + rng.integers(-2, 3), 17 + rng.integers(-2, 3)
    xs, ys, ts, ps = [], [], [], []
    for k in range(n_steps):
        px = int(np.clip(cx + np.cos(ang) * (k - n_steps / 2) * 1.2, 1, 32))
        py = int(np.clip(cy + np.sin(ang) * (k - n_steps / 2) * 1.2, 1, 32))
        t = k * duration_us // n_steps
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                xs.append(px + dx), ys.append(py + dy), ts.append(t + int(rng.integers(0, 1000))), ps.append(1)
        xs.append(px - 1), ys.append(py), ts.append(t + 500), ps.append(0)
    for _ in range(10):                                     # noise
        xs.append(int(rng.integers(0, 34))), ys.append(int(rng.integers(0, 34)))
        ts.append(int(rng.integers(0, duration_us))), ps.append(int(rng.integers(0, 2)))
    order = np.argsort(np.asarray(ts), kind="stable")
    arr = [np.asarray(v, dtype=np.int64)[order] for v in (xs, ys, ts, ps)]
    return Events(*arr)


def write_nmnist_folder(root, n_train: int = 6, n_test: int = 2, seed: int = 0, classes=range(10)) -> str:
    rng = np.random.default_rng(seed)
    for split, n in (("Train", n_train), ("Test", n_test)):
        for d in classes:
            folder = os.path.join(str(root), split, str(d))
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                with open(os.path.join(folder, f"{i:05d}.bin"), "wb") as f:
                    f.write(encode_nmnist(class_events(d, rng)))
    return str(root)
