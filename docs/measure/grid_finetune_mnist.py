"""An snnTorch conv net trained on real MNIST, brought in through NIR and fine-tuned on the Loihi grid (issue 28).

Run from the repository root (the package `saf` importable):
    OMP_NUM_THREADS=1 PYTHONPATH=<dir holding saf> python docs/measure/grid_finetune_mnist.py --work DIR \
        [--beta 0.5] [--T 10] [--data-root /path/to/mnist]
The net is the issue's: Conv2d(1, 16, 3, stride 2, pad 1) -> Leaky -> Conv2d(16, 32, 3, stride 2, pad 1) -> Leaky
-> Flatten -> Linear(1568, 10), readout summed over T, snnTorch's Leaky (subtract reset, beta per neuron). Steps:
1 epoch of snnTorch training on the 60,000 MNIST training images (BPTT, Adam, seed 0); snnTorch's export_to_nir;
`saf import --reset subtract-undecayed --dataset mnist`; `saf finetune --deploy-target loihi --epochs 1`;
`saf export --target loihi` (8-bit input: MNIST's own pixels); `saf verify` on the 10,000 test images with the
default backends (the trained-model pair joins them for a grid-trained run). Prints snnTorch's float accuracy,
the deployed accuracy, same prediction fine-tuned vs deployed, agreement with snnTorch, the certificate's verdict
and notes, and verify's exit code. DIR keeps every stage; a stage whose output exists is not redone. Nothing timed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn
from leak_export import run, train      # the sibling script (a script's folder is on its path)


def build_net(beta: float, seed: int = 0) -> nn.Sequential:
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    sg = surrogate.fast_sigmoid(slope=5)

    def leaky(shape):     # per-neuron parameters: a scalar beta writes a NIR LIF that NIR cannot type
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), reset_mechanism="subtract",
                         init_hidden=True, spike_grad=sg)

    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), leaky((16, 14, 14)),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), leaky((32, 7, 7)), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--data-root", default="/work/shared/data/mnist")
    a = ap.parse_args()
    import nir
    from snntorch.export_nir import export_to_nir

    from saf.deploy.backends.registry import Bundle, run_backend
    from saf.deploy.main import main as saf
    from saf.train.data import load_dataset

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist", a.data_root)
    net_file = work / "snntorch.pt"
    net = build_net(a.beta)
    if net_file.exists():
        net.load_state_dict(torch.load(net_file, weights_only=True))
    else:
        train(net, data, len(data.y_train), a.T, batch=128)
        torch.save(net.state_dict(), net_file)
    xt, yt = data.x_test.float(), data.y_test
    with torch.no_grad():
        src = torch.cat([run(net, xt[i:i + 1000], a.T) for i in range(0, len(yt), 1000)]).argmax(1)
        nir.write(str(work / "net.nir"), export_to_nir(net, torch.zeros(1, 1, 28, 28), ignore_dims=[0]))
    mnist = ["--data-root", a.data_root]
    stages = [("run", ["import", str(work / "net.nir"), "--out", str(work / "run"), "--reset",
                       "subtract-undecayed", "--T", str(a.T), "--dataset", "mnist"]),
              ("ft", ["finetune", str(work / "run"), "--deploy-target", "loihi", "--epochs", "1", "--data",
                      "mnist", *mnist, "--no-progress", "--out", str(work / "ft")]),
              ("bundle", ["export", str(work / "ft"), "--target", "loihi", "--calibrate-data", "mnist", *mnist, "--out", str(work / "bundle")])]
    for name, argv in stages:
        if not (work / name).exists():
            rc = saf(argv)
            print(f"saf {' '.join(argv)}: exit {rc}", flush=True)
            assert rc == 0, argv
    rc = saf(["verify", str(work / "bundle"), *mnist, "--no-progress"])
    print(f"saf verify: exit {rc}")
    b = Bundle.load(work / "bundle")
    xq = b.graph.quantize_input(xt.numpy())
    dep = torch.from_numpy(run_backend("emulator", b, xq, record_spikes=False).readout.argmax(1))
    ft = torch.from_numpy(run_backend("trained", b, xq, record_spikes=False).readout.argmax(1))
    cert = json.loads((work / "bundle" / "manifest.json").read_text())["certificate"]
    print(f"beta {a.beta}, T {a.T}, n {len(yt)}: snnTorch float {float((src == yt).float().mean()):.2%}, "
          f"deployed {float((dep == yt).float().mean()):.2%}, same prediction fine-tuned/deployed "
          f"{float((ft == dep).float().mean()):.2%}, agreement with snnTorch {float((dep == src).float().mean()):.2%}, "
          f"certificate {'EXACT' if cert['exact'] else 'NOT EXACT'}")


if __name__ == "__main__":
    main()
