"""CIFAR10-DVS (Li et al. 2017) from its published folders of AEDAT 2.0 recordings (DVS128):

  ROOT/<class>/*.aedat   class in airplane automobile bird cat deer dog frog horse ship truck

There is no official split: per class, files in name order, the last tenth (at least one) is the
test split, the rest train. Event address as tonic.io.read_dvs_128 decodes it: x = (a >> 8) & 0x7F,
y = (a >> 1) & 0x7F, p = a & 1. Sensor 128x128; 10 classes.
"""
from __future__ import annotations

import os

from saf.train.data.events.aedat import read_aedat
from saf.train.data.base import Dataset, DatasetError
from saf.train.data.events.binning import Events, bin_events, check_events, frames_dataset

WIDTH = HEIGHT = 128
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def decode_address(a) -> tuple:
    return (a >> 8) & 0x7F, (a >> 1) & 0x7F, a & 1


def read_recording(path: str) -> Events:
    a, t = read_aedat(path, "2")
    x, y, p = decode_address(a)
    return check_events(Events(x=x, y=y, t=t, p=p), HEIGHT, WIDTH, path)


def load_cifar10dvs(root: str, T: int, bin_by: str = "time") -> Dataset:
    train, test = ([], []), ([], [])
    for label, cls in enumerate(CLASSES):
        d = os.path.join(root, cls)
        if not os.path.isdir(d):
            raise DatasetError(f"{d}: missing CIFAR10-DVS class folder (expected {root}/<class>/*.aedat for "
                               f"{', '.join(CLASSES)})")
        files = sorted(n for n in os.listdir(d) if n.endswith(".aedat"))
        n_test = max(1, len(files) // 10) if files else 0
        for i, name in enumerate(files):
            frames = bin_events(read_recording(os.path.join(d, name)), T, HEIGHT, WIDTH, bin_by)
            split = test if i >= len(files) - n_test else train
            split[0].append(frames)
            split[1].append(label)
    return frames_dataset("cifar10dvs", train, test, len(CLASSES), T, HEIGHT, WIDTH)
