"""Where `saf export --target loihi` spends its time on a non-dyadic leak: a two-conv MNIST-shaped snnTorch net.

Run from the worktree root (the package `saf` importable, tests/ on the path):
    PYTHONPATH=<dir holding saf> OMP_NUM_THREADS=1 python docs/measure/leak_export.py --work DIR \
        [--beta 0.9] [--T 10] [--train 4000] [--data-root /path/to/mnist] [--profile N]
It builds Conv2d(1, 12, 5) -> Leaky -> AvgPool2d(2) -> Conv2d(12, 32, 5) -> Leaky -> AvgPool2d(2) -> Flatten
-> Linear(512, 10) (readout summed over T; snnTorch's Leaky, subtract reset, beta per neuron), trains it one pass
over --train MNIST training images (BPTT, Adam; 0: untrained), writes it with snnTorch's export_to_nir, imports it
(`saf import --reset subtract-undecayed --T T --dataset mnist`) and exports it
(`saf export RUN --target loihi --calibrate-data mnist`) under cProfile, printing the wall time and the N
functions with the largest cumulative time (their share of the export), the wall time and the process's CPU
time. The emulator's numba kernels compile on their first use after a source change (cached after that). DIR keeps the NIR file and the run, so a
second call with the same DIR profiles the export alone.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn


def build_net(beta: float, seed: int = 0) -> nn.Sequential:
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    sg = surrogate.fast_sigmoid(slope=5)

    def leaky(shape):
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), reset_mechanism="subtract",
                         init_hidden=True, spike_grad=sg)

    return nn.Sequential(nn.Conv2d(1, 12, 5), leaky((12, 24, 24)), nn.AvgPool2d(2),
                         nn.Conv2d(12, 32, 5), leaky((32, 8, 8)), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(512, 10))


def run(net: nn.Sequential, x: torch.Tensor, T: int) -> torch.Tensor:
    from snntorch import utils
    utils.reset(net)
    return sum(net(x) for _ in range(T))


def train(net: nn.Sequential, data, n: int, T: int, batch: int = 64) -> None:
    """One pass over n training images (seeded order), BPTT through snnTorch, Adam 2e-3."""
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(data.y_train), generator=g)[:n]
    x, y = data.x_train.float(), data.y_train
    for i in range(0, n, batch):
        idx = perm[i:i + batch]
        loss = nn.functional.cross_entropy(run(net, x[idx], T) / T, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="directory for the NIR file, the run and the bundle")
    ap.add_argument("--beta", type=float, default=0.9)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--train", type=int, default=4000, help="MNIST training images for one pass (0: untrained)")
    ap.add_argument("--data-root", default="/work/shared/data/mnist")
    ap.add_argument("--profile", type=int, default=25, help="functions listed (0: no profiler, the wall time only)")
    a = ap.parse_args()
    from saf.deploy.main import main as saf
    from saf.train.data import load_dataset

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    nir_file, run_dir = work / "net.nir", work / "run"
    if not (run_dir / "model.safetensors").exists() and not run_dir.exists():
        import nir
        from snntorch.export_nir import export_to_nir

        net = build_net(a.beta)
        if a.train:
            train(net, load_dataset("mnist", a.data_root), a.train, a.T)
        with torch.no_grad():
            nir.write(str(nir_file), export_to_nir(net, torch.zeros(1, 1, 28, 28), ignore_dims=[0]))
        assert saf(["import", str(nir_file), "--out", str(run_dir), "--reset", "subtract-undecayed",
                    "--T", str(a.T), "--dataset", "mnist", "--force"]) == 0
    args = ["export", str(run_dir), "--target", "loihi", "--calibrate-data", "mnist", "--data-root", a.data_root,
            "--out", str(work / "bundle"), "--force"]
    prof = cProfile.Profile() if a.profile else None
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    rc = saf(args)
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"saf {' '.join(args)}: exit {rc}, {wall:.1f} s wall, {cpu:.1f} s CPU of this process (under whatever "
          f"load the machine had; the CPU time is the steadier of the two)")
    if prof:
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s)
        total = st.total_tt
        st.sort_stats("cumulative").print_stats(a.profile)
        print(s.getvalue())
        rows = sorted(((v[3], k) for k, v in st.stats.items()), reverse=True)[: a.profile]
        print("cumulative share of the profiled time:")
        for cum, (f, line, name) in rows:
            print(f"  {cum / total:7.2%}  {Path(f).name}:{line} {name}  (calls {st.stats[(f, line, name)][1]})")
    sys.exit(rc)


if __name__ == "__main__":
    main()
