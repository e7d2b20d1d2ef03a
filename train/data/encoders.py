"""Input encoders: a static image -> a spike train x[t] of T steps, chosen at training and carried in
the checkpoint (TrainConfig.encoder / encoder_seed) and the bundle (meta["input_coding"]), so every
form (training, export calibration, verify, run) feeds the same trains.

  constant  the image itself every step (no train: the default, docs/design.md#input)
  rate      Bernoulli: x[t] = 1 with probability clip(x, 0, 1), independently per step and pixel.
            The draws come from numpy's PCG64 seeded with (seed, crc32 of the sample's float32 bytes):
            the same image gives the same train whatever its index, batch or split.
  latency   time to first spike: one spike at step t_s = round((1 - clip(x, 0, 1)) * (T - 1))
            (0-based; brightest first), none where x <= 0.
Trains are {0, 1} float32 [N, T, *shape]: a 1-bit input with input_scale 1 (exact).
"""
from __future__ import annotations

import zlib

import numpy as np

from saf.train.data.base import DatasetError

ENCODERS = ("constant", "rate", "latency")


def check_encoder(kind: str) -> str:
    if kind not in ENCODERS:
        raise DatasetError(f"--encoder must be one of {', '.join(ENCODERS)}, got {kind!r}")
    return kind


def _rate(x: np.ndarray, T: int, seed: int) -> np.ndarray:
    out = np.empty((x.shape[0], T, *x.shape[1:]), dtype=np.float32)
    prob = np.clip(x.astype(np.float64), 0.0, 1.0)
    for i in range(x.shape[0]):
        key = zlib.crc32(np.ascontiguousarray(x[i], dtype=np.float32).tobytes())
        u = np.random.Generator(np.random.PCG64([int(seed), key])).random((T, *x.shape[1:]))
        out[i] = u < prob[i]
    return out


def _latency(x: np.ndarray, T: int) -> np.ndarray:
    v = np.clip(x.astype(np.float64), 0.0, 1.0)
    ts = np.rint((1.0 - v) * (T - 1)).astype(np.int64)
    steps = np.arange(T).reshape(1, T, *([1] * (x.ndim - 1)))
    return ((steps == ts[:, None]) & (v[:, None] > 0)).astype(np.float32)


def encode(x: np.ndarray, T: int, kind: str, seed: int = 0) -> np.ndarray:
    """Images float [N, *shape] -> trains float32 [N, T, *shape] (kind != "constant")."""
    check_encoder(kind)
    if kind == "constant":
        raise ValueError("the constant encoder feeds the image itself; there is no train to build")
    if int(T) < 1:
        raise DatasetError(f"an encoder needs T >= 1, got {T}")
    x = np.asarray(x, dtype=np.float32)
    return _rate(x, int(T), seed) if kind == "rate" else _latency(x, int(T))
