"""Sinabs' tutorial-shaped CNN on sklearn digits, exported with Sinabs' own `to_nir` (runs in .venv-sinabs: Sinabs
3.1.3 pins nir <= 1.0.4, saf pins 1.0.8, so the two never share an environment).

    Conv2d(1, 4, 3, pad 1) -> IAFSqueeze -> SumPool2d(2) -> Conv2d(4, 8, 3, pad 1) -> IAFSqueeze -> SumPool2d(2)
    -> Flatten -> Linear(32, 10) -> IAFSqueeze

No biases (Sinabs' tutorials use bias=False), threshold 1, Sinabs' default MembraneSubtract reset, T = 6, the
digits image (pixels / 16, saf's `digits` dataset and split) as a constant input current every step.

The weights are seeded (torch's CPU generator, identical on every machine), scaled so the largest is 127 / 2^g and
rounded to multiples of 1 / 2^g, so every sum Sinabs computes in float32 (pixels i/16 times weights k/2^g, spike
counts times weights, -1 per reset) is exact: its spikes are the same on every machine and thread count, and an
exact comparison with saf's float form is sound. The largest weight 127 / 2^g is also what makes saf's Loihi
quantization exact: the integer threshold is floor(254 / max|w|) = 2^(g+1) (x16 on the first layer, whose input
is the pixel count), so every weight lands on an even integer 2k and the deployed network equals the float one.

`spike_fn=SingleSpike` is the only Sinabs neuron NIR's `IF` describes: Sinabs' default `MultiSpike` emits
floor(v / threshold) spikes in one step, which no NIR node (nor saf) says; `--spike-fn multi` writes that net, to
show that the comparison catches it (tests/sinabs_suite/suite.py).

    python tests/sinabs_suite/sinabs_cnn.py --out DIR [--spike-fn single|multi]
writes DIR/cnn.nir (Sinabs' to_nir, after nir's infer_types) and DIR/sinabs.npz: the inputs `x` [N, 1, 8, 8], the
labels `y`, and Sinabs' own spikes of every IAF layer `spikes0`.. [N, T, C, H, W] (`spikes2`: [N, T, 10]), uint8
(spike counts per step: 0/1, or more for MultiSpike)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

T = 6
SEED = 0
LEVELS = 127                    # each synapse's weights are k / 2^g, |k| <= 127, and some |k| = 127 (docstring)
LOG2_GRID = (7, 7, 6)           # g per synapse: sets how strongly each layer fires (every layer fires)
PRUNE = (100, 0, 0)              # per synapse: |k| below it set to 0; conv1's worst-case state then fits Loihi's
                                # 24 bits at full weight precision, so saf does not halve its scale (inexact grid)
N_TEST = 360                    # saf's digits test split (train/data/embedded.py: 360 images, stratified, state 0)


def digits_test() -> tuple:
    """saf's `digits` test split without saf: sklearn's digits, train_test_split(test_size=360, stratify, state 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    b = load_digits()
    _, xte, _, yte = train_test_split(b.data.astype(np.int64), b.target.astype(np.int64), test_size=N_TEST,
                                      stratify=b.target, random_state=0)
    return (xte.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8), yte


def build(batch: int, spike_fn: str = "single") -> nn.Sequential:
    import sinabs.layers as sl
    from sinabs.activation import MultiSpike, SingleSpike

    fn = SingleSpike if spike_fn == "single" else MultiSpike
    torch.manual_seed(SEED)

    def iaf():
        return sl.IAFSqueeze(batch_size=batch, spike_fn=fn, min_v_mem=None, spike_threshold=1.0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                        nn.Conv2d(4, 8, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                        nn.Flatten(), nn.Linear(32, 10, bias=False), iaf())
    syn = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for m, g, p in zip(syn, LOG2_GRID, PRUNE):
            k = torch.round(m.weight * (LEVELS / m.weight.abs().max()))
            m.weight.copy_(torch.where(k.abs() < p, 0.0, k) / 2 ** g)
    return net


def run(net: nn.Sequential, x: np.ndarray) -> list:
    """Sinabs' spikes of each IAF layer, [N, T, ...]: the image repeated over T (batch-major, IAFSqueeze's layout)."""
    import sinabs
    import sinabs.layers as sl

    sinabs.reset_states(net)
    n = len(x)
    h = torch.from_numpy(x).unsqueeze(1).expand(n, T, *x.shape[1:]).reshape(n * T, *x.shape[1:])
    out = []
    with torch.no_grad():
        for m in net:
            h = m(h)
            if isinstance(m, sl.IAFSqueeze):
                out.append(h.reshape(n, T, *h.shape[1:]).numpy().copy())
    return out


def export(out: Path, spike_fn: str = "single") -> None:
    import nir
    from sinabs.nir import to_nir

    x, y = digits_test()
    spikes = run(build(len(x), spike_fn), x)
    net = build(1, spike_fn)
    graph = to_nir(net, torch.zeros(1, 1, 8, 8))
    graph.infer_types()                          # Sinabs' graph leaves the Flatten's and Conv's types unset
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".cnn.nir.{os.getpid()}"
    nir.write(str(tmp), graph)
    os.replace(tmp, out / "cnn.nir")
    tmp = out / f".sinabs.{os.getpid()}.npz"
    assert all(np.array_equal(s, np.rint(s)) and 0 <= s.min() and s.max() < 256 for s in spikes)
    np.savez_compressed(tmp, x=x, y=y, **{f"spikes{i}": s.astype(np.uint8) for i, s in enumerate(spikes)})
    os.replace(tmp, out / "sinabs.npz")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--spike-fn", choices=("single", "multi"), default="single")
    a = p.parse_args()
    export(a.out, a.spike_fn)
