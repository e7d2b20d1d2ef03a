"""saf-int before and after issue 31 item 1, side by side in one process on the same inputs.

Run from the worktree root (the package `saf` importable), single-threaded so both forms get one core:
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=<dir holding saf> \
        python docs/measure/saf_int_speed.py BUNDLE [--rev REV] [--limit N] [--repeats R] [--data NAME] [--data-root DIR]
It loads export/proof/saf_int.py as it was at REV (default e344d7e, the last commit with the int64 / Python-int
matmul form) from git into its own module, then times the old and the current run_saf_int alternately (one
untimed warm-up each, the median of R runs, spikes recorded as verify records them) on:
  * BUNDLE's test inputs (load_inputs, as `saf bench infer` reads them; --limit N of them);
  * a synthetic conv net with a non-dyadic leak (lam = 0.9, T = 8: the exact-rational Python-int path);
  * a synthetic MNIST-shaped conv net with few channels (4, 8: the elementwise recurrences dominate);
  * a synthetic conv net with feedback (the step-major schedule).
Every pair must give the same readouts and spikes (else it stops). The emulator's rate is printed for scale.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def old_module(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:export/proof/saf_int.py"], check=True,
                         capture_output=True, text=True).stdout
    for where in ("saf.train.neuron_modes", "saf.core.neuron_modes"):     # the module may have moved since
        try:
            importlib.import_module(where)
            src = src.replace("saf.train" + ".neuron_modes", where)       # split: bulk import rewrites skip it
            break
        except ImportError:
            continue
    mod = types.ModuleType("saf_int_old")
    exec(compile(src, f"{rev}:export/proof/saf_int.py", "exec"), mod.__dict__)
    return mod


def _same(a, b) -> None:
    if not np.array_equal(a.readout, b.readout) or any(not np.array_equal(p, q) for p, q in zip(a.spikes, b.spikes)):
        sys.exit("old and new saf-int differ: stop")


def _rate(run, g, x, repeats: int) -> tuple:
    """(samples/s by the wall clock, samples/s by this process's CPU time, the result); medians of `repeats`.
    On a shared machine the CPU-time rate is the steadier one (both forms run single-threaded here)."""
    r = run(g, x)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run(g, x)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return len(x) / float(np.median(wall)), len(x) / float(np.median(cpu)), r


def compare(name: str, g, x, old, repeats: int) -> None:
    from saf.deploy.backends.emulator import emulate
    from saf.export.proof.saf_int import run_saf_int
    o, oc, a = _rate(lambda *z: old.run_saf_int(*z, record_spikes=True), g, x, repeats)
    n, nc, b = _rate(lambda *z: run_saf_int(*z, record_spikes=True), g, x, repeats)
    _same(a, b)
    e, ec, _ = _rate(emulate, g, x, repeats)
    print(f"{name:<32} {len(x):>6} {o:>9.1f} {n:>9.1f} {n / o:>6.1f}x {oc:>9.1f} {nc:>9.1f} {nc / oc:>6.1f}x "
          f"{e:>9.1f}  {b.info['arithmetic']}, {b.info['schedule']}, float limbs {b.info['float64_limbs']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--rev", default="e344d7e")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=None, help="the dataset when the bundle names none (--random-model)")
    ap.add_argument("--data-root", default=None, help="where the bundle's dataset lies (MNIST IDX files, ...)")
    a = ap.parse_args()
    from saf.deploy.backends.registry import Bundle
    from saf.deploy.verify.inputs import load_inputs
    from saf.export.synthetic import random_graph, random_inputs
    old = old_module(a.rev)
    b = Bundle.load(a.bundle)
    print(f"{'net':<32} {'samples':>6} {'old/s':>9} {'new/s':>9} {'ratio':>7} {'old/cpu-s':>9} {'new/cpu-s':>9} "
          f"{'ratio':>7} {'emulator/s':>9}   (samples per wall-clock second, per CPU second)")
    compare(f"bundle {Path(a.bundle).name}", b.graph, load_inputs(b, a.data, a.data_root, a.limit)[0], old, a.repeats)
    g = random_graph("conv", T=8, lam=0.9, seed=3)
    compare("synthetic conv, lam 0.9, T 8", g, random_inputs(g, 64, seed=1), old, a.repeats)
    g = random_graph("conv", T=6, lam=0.5, seed=3, input_shape=(1, 28, 28))
    compare("synthetic conv 4-8 ch, 1x28x28", g, random_inputs(g, 128, seed=1), old, a.repeats)
    g = random_graph("conv", T=6, lam=0.5, seed=3, feedback=True)
    compare("synthetic conv + feedback, T 6", g, random_inputs(g, 256, seed=1), old, a.repeats)


if __name__ == "__main__":
    main()
