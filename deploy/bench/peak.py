"""What `saf bench infer` compares throughput against: this machine's float32 matmul peak, measured
in the same run, and the dense-equivalent work of one inference."""
from __future__ import annotations

import time

import numpy as np

from saf.export.ir import Graph

# The >= 30% of peak goal of issue 16 for the emulator and ONNX on the demo bundle: reported, not asserted.
PEAK_FRACTION_GOAL = 0.30


def matmul_peak_gflops(n: int = 1024, seconds: float = 1.0, min_reps: int = 5) -> dict:
    """Best float32 GFLOP/s of n x n @ n x n numpy matmuls (all the BLAS threads numpy uses) over
    at least `min_reps` repetitions and about `seconds` of wall time, after one warm-up."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best, reps, t_end = float("inf"), 0, time.perf_counter() + seconds
    while reps < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return {"gflops": 2.0 * n ** 3 / best / 1e9, "n": n, "reps": reps, "dtype": "float32"}


def dense_equivalent_macs(graph: Graph) -> int:
    """Multiply-adds per sample of the network computed densely at every step: each layer's outputs
    times its fan-in (a conv's full kernel C_in*kh*kw), plus every feedback edge, times T."""
    per_step = sum(int(l.n_out) * int(l.fan_in) for l in graph.layers)
    for f in graph.feedback:
        dst = graph.spiking_layers[f.dst]
        fan = int(np.prod(f.weight.shape[1:]))
        per_step += int(dst.n_out) * fan
    return per_step * int(graph.T)


def peak_fraction(samples_per_s: float, macs_per_sample: int, peak_gflops: float) -> float:
    """Dense-equivalent FLOP/s (2 per multiply-add) as a fraction of the measured matmul peak."""
    return samples_per_s * 2.0 * macs_per_sample / (peak_gflops * 1e9)
