"""Datasets for training and verification: a `Dataset` record and `load_dataset(name, ...)`."""
from saf.train.data.base import Dataset, DatasetError
from saf.train.data.batching import batches
from saf.train.data.registry import DATASETS, load_dataset

__all__ = ["Dataset", "DatasetError", "DATASETS", "load_dataset", "batches"]
