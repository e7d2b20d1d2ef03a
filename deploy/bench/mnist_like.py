"""Synthetic MNIST-shaped data written as MNIST's own IDX files, so the MNIST-size conv net (`conv-mnist`,
16C3s2-32C3s2-FC128) can be trained, exported and benchmarked (`saf bench infer --peers`) through the real
commands without the real dataset: `python -m saf.deploy.bench.mnist_like DIR [N_TRAIN N_TEST]`.

The images are train/data/synthetic.py's class templates plus noise at 1 x 28 x 28, as uint8 (input
scale 255, like MNIST); they say nothing about MNIST accuracy, only about speed on a net of MNIST's size."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from saf.train.data.idx import IMAGES_MAGIC, LABELS_MAGIC, SPLIT_FILES, idx_bytes
from saf.train.data.synthetic import LEVELS, load_synthetic


def write_mnist_like(root, n_train: int = 6000, n_test: int = 1000, seed: int = 0) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ds = load_synthetic(seed=seed, shape=(1, 28, 28), classes=10, n_train=n_train, n_test=n_test)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        img = np.rint(x.numpy()[:, 0] * LEVELS).astype(np.uint8)
        images, labels = SPLIT_FILES[split]
        for name, payload in ((images, idx_bytes(img, IMAGES_MAGIC)), (labels, idx_bytes(y.numpy(), LABELS_MAGIC))):
            tmp = root / (name + ".tmp")
            tmp.write_bytes(payload)
            tmp.replace(root / name)
    return root


if __name__ == "__main__":
    args = sys.argv[1:]
    if not 1 <= len(args) <= 3:
        print("usage: python -m saf.deploy.bench.mnist_like DIR [N_TRAIN N_TEST]", file=sys.stderr)
        sys.exit(2)
    out = write_mnist_like(args[0], *(int(a) for a in args[1:]))
    print(f"wrote synthetic MNIST-shaped IDX files to {out}")
