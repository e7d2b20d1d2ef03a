"""Datasets for training and verification: a `Dataset` record and `load_dataset(name, ...)`."""
from .base import Dataset, DatasetError
from .batching import batches
from .registry import DATASETS, load_dataset

__all__ = ["Dataset", "DatasetError", "DATASETS", "load_dataset", "batches"]
