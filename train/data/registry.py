"""Dataset names and the one entry point, load_dataset(name, root, seed, **kw)."""
from __future__ import annotations

from typing import Optional

from .base import Dataset, DatasetError
from .cifar import load_cifar10
from .embedded import load_digits_dataset, load_iris_dataset
from .idx import load_idx_dataset
from .synthetic import load_synthetic

DATASETS = ("digits", "iris", "mnist", "fashion-mnist", "cifar10", "synthetic")
NEEDS_ROOT = ("mnist", "fashion-mnist", "cifar10")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10"}


def load_dataset(name: str, root: Optional[str] = None, seed: int = 0, **kw) -> Dataset:
    """Load a dataset fully into memory.

    digits and iris are bundled with scikit-learn; mnist, fashion-mnist and cifar10 read local
    files under `root` (nothing is downloaded); synthetic takes shape, classes, n_train, n_test,
    noise. `seed` only affects synthetic data: the real datasets use fixed splits.
    """
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
    if root is None or str(root) == "":
        raise DatasetError(f"dataset {key!r} is read from local files: pass --data-root DIR "
                           f"(root=...) pointing at them")
    root = str(root)
    if key == "cifar10":
        return load_cifar10(root)
    return load_idx_dataset(key, root)
