"""Small event recordings written in the datasets' exact published file formats (nothing is downloaded).

write_nmnist_folder: ROOT/Train/<digit>/NNNNN.bin and ROOT/Test/<digit>/NNNNN.bin, 5-byte events.
Each class moves a small blob along its own direction on the 34x34 sensor (ON events at the leading
edge, OFF at the trailing), plus a few noise events, so a small network can learn it.
"""
from __future__ import annotations

import os

import numpy as np

from saf.train.data.events.binning import Events
from saf.train.data.events.nmnist import encode_nmnist


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


def write_dvsgesture_folder(root, seed: int = 0) -> str:
    """ROOT/trials_to_{train,test}.txt, userNN_led.aedat (AEDAT 3.1) and userNN_led_labels.csv:
    user01 (train) holds classes 1 and 4, user02 (test) class 2, each a 100 ms interval of events."""
    from saf.train.data.events.aedat import write_aedat3

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    plan = {"user01_led": [(1, 0, 100_000), (4, 150_000, 250_000)], "user02_led": [(2, 50_000, 150_000)]}
    for name, segs in plan.items():
        a, t = [], []
        for c, s, e in segs:
            n = 200
            x, y = rng.integers(0, 128, n) // (c + 1) * (c + 1), rng.integers(0, 128, n)
            p = rng.integers(0, 2, n)
            a.append((x << 17) | (y << 2) | (p << 1))
            t.append(np.sort(rng.integers(s, e, n)))
        with open(os.path.join(root, name + ".aedat"), "wb") as f:
            f.write(write_aedat3(np.concatenate(a), np.concatenate(t), packet=150))
        with open(os.path.join(root, name + "_labels.csv"), "w") as f:
            f.write("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in segs))
    for split, names in (("train", ["user01_led.aedat"]), ("test", ["user02_led.aedat"])):
        with open(os.path.join(root, f"trials_to_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    return str(root)


def write_cifar10dvs_folder(root, per_class: int = 2, seed: int = 0) -> str:
    """ROOT/<class>/cifar10_<class>_<i>.aedat, AEDAT 2.0 DVS128 events."""
    from saf.train.data.events.aedat import write_aedat2
    from saf.train.data.events.cifar10dvs import CLASSES

    rng = np.random.default_rng(seed)
    for k, cls in enumerate(CLASSES):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(per_class):
            n = 150
            x, y, p = rng.integers(0, 128, n), (rng.integers(0, 128, n) + 11 * k) % 128, rng.integers(0, 2, n)
            addr = (x << 8) | (y << 1) | p
            with open(os.path.join(root, cls, f"cifar10_{cls}_{i}.aedat"), "wb") as f:
                f.write(write_aedat2(addr, np.sort(rng.integers(0, 1_000_000, n))))
    return str(root)
