"""Dataset names and the one entry point, load_dataset(name, root, seed, **kw)."""
from __future__ import annotations

from typing import Optional

import torch

from saf.train.data.base import Dataset, DatasetError
from saf.train.data.cifar import load_cifar10
from saf.train.data.events.cifar10dvs import load_cifar10dvs
from saf.train.data.events.dvsgesture import load_dvsgesture
from saf.train.data.coding import InputCoding
from saf.train.data.embedded import load_digits_dataset, load_iris_dataset
from saf.train.data.encoders import encode
from saf.train.data.idx import load_idx_dataset
from saf.train.data.events.nmnist import load_nmnist
from saf.train.data.synthetic import load_synthetic
from saf.train.data.yinyang import load_xor_dataset, load_yinyang_dataset

EVENT_READERS = {"nmnist": load_nmnist, "dvsgesture": load_dvsgesture, "cifar10dvs": load_cifar10dvs}         # name -> load(root, T, bin_by); one module per format
DATASETS = ("digits", "iris", "mnist", "fashion-mnist", "cifar10", "synthetic", *EVENT_READERS, "xor", "yinyang")
NEEDS_ROOT = ("mnist", "fashion-mnist", "cifar10", *EVENT_READERS)
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10",
            "n-mnist": "nmnist", "yin-yang": "yinyang", "dvs-gesture": "dvsgesture", "cifar10-dvs": "cifar10dvs"}


def load_dataset(name: str, root: Optional[str] = None, seed: int = 0, T: Optional[int] = None,
                 coding: Optional[InputCoding] = None, **kw) -> Dataset:
    """Load a dataset fully into memory, as the network's input per step.

    digits and iris are bundled with scikit-learn; mnist, fashion-mnist and cifar10 read local
    files under `root` (nothing is downloaded); synthetic takes shape, classes, n_train, n_test,
    noise. `seed` only affects synthetic data: the real datasets use fixed splits.
    Event datasets (nmnist, dvsgesture, cifar10dvs) are binned into T frames by coding.bin_by; a static dataset with
    coding.encoder rate/latency becomes T-step spike trains (both: x [N, T, *input_shape]).
    """
    coding = coding or InputCoding()
    ds = _load(name, root, seed, T, coding, **kw)
    if coding.encoder == "constant" or ds.time_steps is not None:
        return ds
    if T is None:
        raise DatasetError(f"the {coding.encoder} encoder needs the number of time steps T")
    ds.x_train = torch.from_numpy(encode(ds.x_train.numpy(), T, coding.encoder, coding.seed))
    ds.x_test = torch.from_numpy(encode(ds.x_test.numpy(), T, coding.encoder, coding.seed))
    ds.time_steps, ds.input_scale, ds.augment = int(T), 1.0, None
    ds.name = f"{ds.name}+{coding.encoder}"
    ds.__post_init__()
    return ds


def _load(name: str, root: Optional[str], seed: int, T: Optional[int], coding: InputCoding, **kw) -> Dataset:
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if key == "synthetic":
        try:
            return load_synthetic(seed=seed, **kw)
        except TypeError as e:
            raise DatasetError(f"synthetic: {e}; options are shape, classes, n_train, n_test, "
                               f"noise") from None
    if kw:
        raise DatasetError(f"dataset {key!r} takes no options, got {', '.join(sorted(kw))}")
    if key == "digits":
        return load_digits_dataset()
    if key == "iris":
        return load_iris_dataset()
    if key == "xor":
        return load_xor_dataset()
    if key == "yinyang":
        return load_yinyang_dataset()
    if root is None or str(root) == "":
        raise DatasetError(f"dataset {key!r} is read from local files: pass --data-root DIR "
                           f"(root=...) pointing at them")
    root = str(root)
    if key in EVENT_READERS:
        if T is None or int(T) < 1:
            raise DatasetError(f"dataset {key!r} is binned into T frames: T must be given (>= 1)")
        return EVENT_READERS[key](root, int(T), coding.bin_by)
    if key == "cifar10":
        return load_cifar10(root)
    return load_idx_dataset(key, root)
