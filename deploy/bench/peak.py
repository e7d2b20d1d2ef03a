"""What `saf bench infer` compares throughput against: this machine's float32 matmul peak, measured
in the same run with every installed library (numpy's BLAS, torch's), the best kept; the multiply-adds
one inference executes on a backend (counted by the backend itself where it skips work, e.g. the
event-driven emulator, else its declared work model, BackendSpec.work); and the dense-equivalent work
(both work models: deploy/backends/work.py)."""
from __future__ import annotations

import time

import numpy as np

# The >= 30% of peak goal of issue 16 for the emulator and ONNX on the demo bundle: reported, not asserted.
PEAK_FRACTION_GOAL = 0.30


def _best_seconds(mm, seconds: float, min_reps: int) -> tuple:
    mm()
    best, reps, t_end = float("inf"), 0, time.perf_counter() + seconds
    while reps < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best, reps


def _matmuls(n: int) -> dict:
    """library -> a () -> None running one float32 n x n @ n x n product (numpy always; torch if installed)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = {"numpy": lambda: a @ b}
    try:
        import torch
    except ImportError:
        return out
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out["torch"] = lambda: torch.mm(ta, tb)
    return out


def matmul_peak_gflops(n: int = 1024, seconds: float = 1.0, min_reps: int = 5) -> dict:
    """Best float32 GFLOP/s of n x n @ n x n matmuls, per installed library (numpy's BLAS may run a
    generic kernel where torch's reaches several times more), each over at least `min_reps` repetitions
    and about `seconds` of wall time after one warm-up; "gflops" is the best library's."""
    by = {}
    reps = 0
    for lib, mm in _matmuls(n).items():
        best, r = _best_seconds(mm, seconds, min_reps)
        by[lib] = 2.0 * n ** 3 / best / 1e9
        reps = r if not reps else min(reps, r)
    lib = max(by, key=by.get)
    return {"gflops": by[lib], "library": lib, "by_library": by, "n": n, "reps": reps, "dtype": "float32"}


def peak_fraction(samples_per_s: float, macs_per_sample: int, peak_gflops: float) -> float:
    """FLOP/s (2 per multiply-add) of `macs_per_sample` at `samples_per_s`, as a fraction of the peak."""
    return samples_per_s * 2.0 * macs_per_sample / (peak_gflops * 1e9)
