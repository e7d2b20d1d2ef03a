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

import snntorch_digits as D
import torch


def measure(beta: float, data, tmp: Path, saf) -> dict:
    from saf.deploy.backends.registry import Bundle, run_backend

    net = D.train(D.snntorch_net(beta), data)
    xt, yt = data.x_test.float(), data.y_test
    with torch.no_grad():
        src = D.snntorch_run(net, xt).argmax(1)
    d, path = tmp / f"beta{beta}", tmp / f"beta{beta}.nir"
    D.export(net, path)
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

    data = load_dataset("digits", T=D.T)
    tmp = Path(tempfile.mkdtemp())
    rows = [measure(b, data, tmp, saf) for b in a.betas]
    print("beta  snnTorch float  deployed (finetuned)  same pred ft/deployed  agree w/ snnTorch  certificate")
    for r in rows:
        print(f"{r['beta']:<5} {r['snntorch_acc']:>14.2%}  {r['deployed_acc']:>20.2%}  "
              f"{r['same_pred_ft_deployed']:>21.2%}  {r['agree_snntorch']:>17.2%}  "
              f"{'EXACT' if r['exact'] else 'NOT EXACT'}   (n = {r['n']})")


if __name__ == "__main__":
    main()
