"""DVS Gesture (Amir et al. 2017, IBM) from its published folder (the DvsGesture archive, unpacked):

  ROOT/trials_to_train.txt, ROOT/trials_to_test.txt   one recording file name per line
  ROOT/userNN_<lighting>.aedat                        AEDAT 3.1 (train/data/events/aedat.py)
  ROOT/userNN_<lighting>_labels.csv                   "class,startTime_usec,endTime_usec", class 1..11

Each labelled interval [start, end) of a recording is one sample, label class - 1. Polarity event
address (tonic.io.read_dvs_ibm): x = (a >> 17) & 0x1FFF, y = (a >> 2) & 0x1FFF, p = (a >> 1) & 1.
Sensor 128x128; 11 classes.
"""
from __future__ import annotations

import os

from saf.train.data.events.aedat import read_aedat
from saf.train.data.base import Dataset, DatasetError
from saf.train.data.events.binning import Events, bin_events, check_events, frames_dataset

WIDTH = HEIGHT = 128
NUM_CLASSES = 11
SPLIT_LISTS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}


def decode_address(a) -> tuple:
    return (a >> 17) & 0x1FFF, (a >> 2) & 0x1FFF, (a >> 1) & 1


def read_labels(path: str) -> list:
    """[(label 0..10, start_us, end_us)] from a *_labels.csv file."""
    try:
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    out = []
    for i, line in enumerate(lines[1:], start=2):             # line 1 is the header
        try:
            c, s, e = (int(v) for v in line.split(","))
        except ValueError:
            raise DatasetError(f"{path}: line {i} is not 'class,startTime_usec,endTime_usec'") from None
        if not 1 <= c <= NUM_CLASSES or e <= s:
            raise DatasetError(f"{path}: line {i}: class must be 1..{NUM_CLASSES} and end > start")
        out.append((c - 1, s, e))
    return out


def _split(root: str, split: str, T: int, bin_by: str) -> tuple:
    lst = os.path.join(root, SPLIT_LISTS[split])
    try:
        with open(lst) as f:
            names = [l.strip() for l in f if l.strip()]
    except OSError:
        raise DatasetError(f"{lst}: missing DVS Gesture trial list (expected {root}/trials_to_train.txt, "
                           f"trials_to_test.txt and the userNN_*.aedat / *_labels.csv files)") from None
    frames, labels = [], []
    for name in names:
        path = os.path.join(root, name)
        a, t = read_aedat(path, "3")
        x, y, p = decode_address(a)
        ev = check_events(Events(x=x, y=y, t=t, p=p), HEIGHT, WIDTH, path)
        for label, start, end in read_labels(path[:-len(".aedat")] + "_labels.csv"):
            m = (ev.t >= start) & (ev.t < end)
            part = Events(x=ev.x[m], y=ev.y[m], t=ev.t[m], p=ev.p[m])
            frames.append(bin_events(part, T, HEIGHT, WIDTH, bin_by))
            labels.append(label)
    return frames, labels


def load_dvsgesture(root: str, T: int, bin_by: str = "time") -> Dataset:
    return frames_dataset("dvsgesture", _split(root, "train", T, bin_by), _split(root, "test", T, bin_by),
                          NUM_CLASSES, T, HEIGHT, WIDTH)
