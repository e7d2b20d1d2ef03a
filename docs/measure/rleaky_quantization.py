"""Where the snnTorch RLeaky net of tests/test_nir_snntorch.py loses agreement when deployed with 8-bit weights.

Run from the worktree root (the package `saf` importable):
    PYTHONPATH=<dir holding saf> python docs/measure/rleaky_quantization.py [--threads N]
It trains the test's RLeaky net (--seed: another net of the same recipe, for the spread) with snntorch_digits.py
(the tests' recipe, the same net bit for bit at the same seed and threads; torch's thread count while training
changes the float sums and so the net: --threads picks it, 2 as the tests train), exports it (NIR -> saf
import -> saf export --target loihi), checks that the deployed integer readout (saf-int) agrees with the float simulation below when every weight is
quantized as export/quantize.py does, and then counts, on the 360 digits test images (and the 512 calibration
images export scores on), how many predictions of snnTorch's own forward pass are kept when only some
parameters are quantized, or quantized differently:
  * partial: each group alone / all but that group (conv weights, conv bias, fc2 feed-forward weights,
    recurrent weights, fc2 bias, readout), at the scales export chose;
  * clip: the fc2 scale raised by a factor (weights beyond the grid saturate at 254), i.e. fix (a);
  * exponent: the recurrent weights on their own exponent e (grid step 2^(e+1), |w| <= 254 * 2^e) so the
    feed-forward ones use the whole 8-bit range, i.e. fix (b);
  * levels: more weight levels than an 8-bit synapse holds (max |w| in integer units, step 2).
The quantized nets run in snnTorch itself (float32), weights replaced by W_int / s.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import snntorch_digits as D
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="torch threads while training (the tests train with 2)")
    ap.add_argument("--seed", type=int, default=0, help="the net's init and shuffling seed (the test uses 0)")
    a = ap.parse_args()
    from saf.deploy.main import main as saf
    from saf.export.bundle.store import load_graph
    from saf.export.proof.saf_int import run_saf_int
    from saf.train.data import load_dataset

    data = load_dataset("digits", T=D.T)
    net = D.train(D.snntorch_net(0.5, True, seed=a.seed), data, seed=a.seed, threads=a.threads)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    tmp = Path(tempfile.mkdtemp())
    D.export(net, tmp / "r.nir")
    assert saf(["import", str(tmp / "r.nir"), "--out", str(tmp / "run"), "--reset", "subtract-undecayed"]) == 0
    assert saf(["export", str(tmp / "run"), "--target", "loihi", "--calibrate-data", "digits",
                "--out", str(tmp / "b")]) == 0
    g = load_graph(tmp / "b")
    xt, xc = data.x_test.float(), data.x_train[:512].float()
    with torch.no_grad():
        rt, rc = (D.snntorch_run(net, x).argmax(1) for x in (xt, xc))
    dep = run_saf_int(g, g.quantize_input(xt.numpy()), record_spikes=False).readout.argmax(1)
    conv, lin, rec, ro = state["0.weight"] / 16, state["4.weight"] / 4, state["5.recurrent.weight"], state["6.weight"]
    m0, mff, mfb = float(conv.abs().max()), float(lin.abs().max()), float(rec.abs().max())
    S0, S1, SR = g.layers[0].scale, g.layers[1].scale, g.layers[2].scale
    assert S0 == math.floor(254 / m0) and S1 == math.floor(254 / max(mff, mfb)), (S0, S1)

    def q(w, s, step=2, lim=None):
        v = torch.round(w * s / step) * step
        return (v if lim is None else v.clamp(-lim, lim)) / s

    def agree(s0=S0, s1=S1, parts=("conv", "convb", "ff", "fb", "b1", "ro"), e=0, lim=None, preds=None) -> tuple:
        n = D.snntorch_net(0.5, True)
        st = dict(state)
        if "conv" in parts:
            st["0.weight"] = q(conv, s0, lim=lim) * 16
        if "convb" in parts:
            st["0.bias"] = torch.round(state["0.bias"] * s0) / s0
        if "ff" in parts:
            st["4.weight"] = q(lin, s1, lim=lim) * 4
        if "fb" in parts:
            st["5.recurrent.weight"] = q(rec, s1, 2 << e, None if lim is None else lim << e)
        if "b1" in parts:     # the layer's bias is fc2's plus the recurrent Linear's, rounded as one
            tot = torch.round((state["4.bias"] + state["5.recurrent.bias"]) * s1) / s1
            st["4.bias"] = tot - state["5.recurrent.bias"]
        if "ro" in parts:
            st["6.weight"], st["6.bias"] = q(ro, SR), torch.round(state["6.bias"] * SR) / SR
        n.load_state_dict(st)
        with torch.no_grad():
            pred = [D.snntorch_run(n, x).argmax(1) for x in (xt, xc)]
        if preds is not None:
            preds.append(pred[0])
        return tuple(int((p == r).sum()) for p, r in zip(pred, (rt, rc)))

    every = ("conv", "convb", "ff", "fb", "b1", "ro")
    sim = []
    full = agree(preds=sim)
    same = int((sim[0].numpy() == dep).sum())
    print(f"deployed saf-int vs snnTorch: {int((dep == rt.numpy()).sum())}/360; float simulation of the "
          f"quantized net: {full[0]}/360 (calibration {full[1]}/512); simulation == saf-int on {same}/360")
    with torch.no_grad():
        out = D.snntorch_run(net, xt)
    top2, bad = out.topk(2, 1).values, np.flatnonzero(dep != rt.numpy())
    print("snnTorch's margin (top1 - top2 readout) of the disagreeing images:",
          np.round((top2[bad, 0] - top2[bad, 1]).numpy(), 2).tolist(), f"median of all {float((top2[:, 0] - top2[:, 1]).median()):.2f}")
    print(f"scales: conv1 {S0:g}, fc2 {S1:g} (max |w| feed-forward {mff:.4f}, recurrent {mfb:.4f}: the "
          f"feed-forward weights reach {round(mff * S1)} of 254), readout {SR:.4g}")
    for p in every:
        print(f"partial  only {p:5s} {agree(parts=(p,))}   all but {p:5s} {agree(parts=tuple(x for x in every if x != p))}")
    for c in (1.25, 1.5, 2.0, 3.0):
        s1 = math.floor(S1 * c)
        print(f"clip     fc2 scale x{c}: {s1}, {int((rec.abs() * s1 > 254).sum())} recurrent / "
              f"{int((lin.abs() * s1 > 254).sum())} feed-forward weights saturate: {agree(s1=s1, lim=254)}")
    for e in (1, 2, 3):
        s1 = math.floor(254 / max(mff, mfb / (1 << e)))
        print(f"exponent recurrent e = {e}: fc2 scale {s1}: {agree(s1=s1, e=e)}")
    for w0, w1 in ((254, 254), (508, 254), (254, 508), (508, 508), (1016, 1016), (4064, 4064), (32512, 32512)):
        print(f"levels   conv1 max {w0}, fc2 max {w1}: {agree(math.floor(w0 / m0), math.floor(w1 / max(mff, mfb)))}")


if __name__ == "__main__":
    main()
