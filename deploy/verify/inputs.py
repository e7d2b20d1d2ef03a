"""The inputs a bundle runs on: the test split of its dataset (binned, encoded and quantized exactly as at
training and export; FP bundles get their latency-code spike frames), or a user's .npy of quantized inputs
checked against the bundle's shape and range."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from saf.train.data import DatasetError
from saf.core.counts import check_count

from saf.deploy.backends.registry import Bundle


def load_inputs(bundle: Bundle, data: str, root, limit) -> tuple:
    """(xq int64 [N, ...], labels, dataset name) of the test split, quantized as the bundle says."""
    from saf.train.data import load_dataset
    from saf.train.data.coding import InputCoding

    from saf.deploy.verify.fp_dt import is_fp_bundle, load_fp_inputs

    if is_fp_bundle(bundle):          # FP: the latency code's spike frames at the bundle's dt
        return load_fp_inputs(bundle, data, root, limit)[:3]
    name = data or bundle.dataset
    if not name:
        raise DatasetError(f"{bundle.path}: the bundle names no training dataset; pass --data NAME")
    g = bundle.graph                  # events binned / images encoded exactly as at training and export
    coding = InputCoding.from_dict(g.meta.get("input_coding")) if g.input_time_varying else InputCoding()
    ds = load_dataset(name, root, T=g.T, coding=coding)
    if tuple(ds.input_shape) != tuple(bundle.graph.input_shape):
        raise DatasetError(f"dataset {ds.name} has input {list(ds.input_shape)}, the bundle expects "
                           f"{list(bundle.graph.input_shape)}")
    check_count("--limit", limit, 1, DatasetError)
    x, y = ds.x_test.numpy(), ds.y_test.numpy()
    if limit:
        x, y = x[:limit], y[:limit]
    return bundle.graph.quantize_input(x), y, ds.name


def load_npy_inputs(bundle: Bundle, path: str) -> np.ndarray:
    """Quantized inputs from a .npy file, checked against the bundle's input shape and range."""
    from saf.deploy.verify.fuzz_inputs import input_range

    p = Path(path)
    try:
        x = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"--inputs {path}: cannot read a .npy array ({e})") from None
    want = tuple(bundle.graph.input_shape)
    lo, hi = input_range(bundle.graph)
    if x.dtype.kind not in "iu":
        raise DatasetError(f"--inputs {path}: needs quantized integers, got dtype {x.dtype}")
    train = (int(bundle.graph.T), *want)                  # one frame per step (spike trains, events)
    if x.ndim < 1 or len(x) < 1 or tuple(x.shape[1:]) not in (want, train):
        raise DatasetError(f"--inputs {path}: shape {list(x.shape)}, the bundle expects "
                           f"[N>=1, {', '.join(map(str, want))}] or [N>=1, {', '.join(map(str, train))}]")
    if x.min() < lo or x.max() > hi:
        raise DatasetError(f"--inputs {path}: values in [{x.min()}, {x.max()}], "
                           f"the bundle's input range is [{lo}, {hi}]")
    return x.astype(np.int64)


def choose_inputs(bundle: Bundle, inputs, data, root, limit) -> tuple:
    """(xq, labels or None, name, FP spike times or None) a verify run compares on: a user's .npy
    (`inputs`, replacing the dataset), an FP bundle's latency-coded test split, or the test split."""
    from saf.deploy.verify.fp_dt import is_fp_bundle, load_fp_inputs

    check_count("--limit", limit, 1, DatasetError)
    if inputs and (data or limit):
        raise DatasetError("--inputs replaces the dataset: drop --data/--limit")
    if inputs:
        return load_npy_inputs(bundle, inputs), None, inputs, None
    if is_fp_bundle(bundle):
        return load_fp_inputs(bundle, data, root, limit)
    return (*load_inputs(bundle, data, root, limit), None)
