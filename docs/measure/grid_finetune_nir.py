"""snnTorch Leaky nets (beta 0.5 and 0.9) brought in through NIR and fine-tuned on the Loihi grid (issue 28).

Run from the worktree root (the package `saf` importable):
    OMP_NUM_THREADS=1 PYTHONPATH=<dir holding saf> python docs/measure/grid_finetune_nir.py [--betas 0.5 0.9]
Per beta: trains snnTorch's Conv2d(1, 8, 3) -> Leaky -> AvgPool2d(2) -> Linear(128, 32) -> Leaky -> Linear(32, 10)
(subtract reset, BPTT, AdamW, 6 epochs, sklearn digits) with snnTorch itself, exports it with snnTorch's
export_to_nir, `saf import`s it (--reset subtract-undecayed: snnTorch's subtraction), `saf finetune --deploy-target
loihi --epochs 1 --data digits`, `saf export --target loihi`, and prints on the 360 digits test images:
snnTorch's float accuracy; the deployed accuracy (the emulator on the bundle); same prediction between the
fine-tuned model (the `trained` backend: the checkpoint's own grid forward) and the deployed network (must be
100 %); agreement with the original snnTorch model; and the certificate's verdict. Nothing timed.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

T = 6


def snntorch_net(beta: float, seed: int = 0) -> nn.Sequential:
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    sg = surrogate.fast_sigmoid(slope=5)

    def leaky(shape):     # per-neuron parameters: a scalar beta writes a NIR LIF of shape [] that NIR cannot type
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), reset_mechanism="subtract",
                         init_hidden=True, spike_grad=sg)

    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), leaky((8, 8, 8)), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(128, 32), leaky((32,)), nn.Linear(32, 10))


def snntorch_run(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    from snntorch import utils
    utils.reset(net)
    return sum(net(x) for _ in range(T))


def train(net: nn.Sequential, data, epochs: int = 6, seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    x, y = data.x_train.float(), data.y_train
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(snntorch_run(net, x[idx]) / T, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def measure(beta: float, data, tmp: Path, saf) -> dict:
    import nir
    from snntorch.export_nir import export_to_nir

    from saf.deploy.backends.registry import Bundle, run_backend

    net = train(snntorch_net(beta), data)
    xt, yt = data.x_test.float(), data.y_test
    with torch.no_grad():
        src = snntorch_run(net, xt).argmax(1)
        graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    d, path = tmp / f"beta{beta}", tmp / f"beta{beta}.nir"
    nir.write(str(path), graph)
    for argv in (["import", str(path), "--out", str(d / "run"), "--reset", "subtract-undecayed"],
                 ["finetune", str(d / "run"), "--deploy-target", "loihi", "--epochs", "1", "--data", "digits",
                  "--no-progress", "--out", str(d / "ft")],
                 ["export", str(d / "ft"), "--target", "loihi", "--calibrate-data", "digits", "--out", str(d / "b")]):
        assert saf(argv) == 0, argv
    b = Bundle.load(d / "b")
    xq = b.graph.quantize_input(xt.numpy())
    dep = torch.from_numpy(run_backend("emulator", b, xq, record_spikes=False).readout.argmax(1))
    ft = torch.from_numpy(run_backend("trained", b, xq, record_spikes=False).readout.argmax(1))
    cert = json.loads((d / "b" / "manifest.json").read_text())["certificate"]
    return {"beta": beta, "snntorch_acc": float((src == yt).float().mean()),
            "deployed_acc": float((dep == yt).float().mean()),
            "same_pred_ft_deployed": float((ft == dep).float().mean()),
            "agree_snntorch": float((dep == src).float().mean()), "exact": cert["exact"], "n": len(yt)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--betas", type=float, nargs="+", default=[0.5, 0.9])
    a = ap.parse_args()
    from saf.deploy.main import main as saf
    from saf.train.data import load_dataset

    data = load_dataset("digits", T=T)
    tmp = Path(tempfile.mkdtemp())
    rows = [measure(b, data, tmp, saf) for b in a.betas]
    print("beta  snnTorch float  deployed (finetuned)  same pred ft/deployed  agree w/ snnTorch  certificate")
    for r in rows:
        print(f"{r['beta']:<5} {r['snntorch_acc']:>14.2%}  {r['deployed_acc']:>20.2%}  "
              f"{r['same_pred_ft_deployed']:>21.2%}  {r['agree_snntorch']:>17.2%}  "
              f"{'EXACT' if r['exact'] else 'NOT EXACT'}   (n = {r['n']})")


if __name__ == "__main__":
    main()
