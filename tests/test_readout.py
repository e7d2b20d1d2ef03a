"""Readout semantics travel with the model (docs/design.md#readouts): the checkpoint records the readout the
loss saw (SAF-F: sum_t lam^(T-t) o[t]; SAF-E/OTTT/BPTT and old checkpoints: sum_t o[t]); eval, export
and every integer form deploy it as an integrator leaking with the network's decay, exactly for dyadic
lam; a backend ignoring the leak is caught. The integer forms are checked against the spec oracle
(tests/saf_test_helpers/reference_lif.py) and against exact rational arithmetic on the recorded spikes."""
from __future__ import annotations

import copy
import json
import pathlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.registry import BackendError, Bundle, run_backend  # noqa: E402
from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.export.bundle.store import BundleError, load_graph, write_bundle  # noqa: E402
from saf.export.bundle.auth import manifest_digest  # noqa: E402
from saf.export.proof.certificate import certify  # noqa: E402
from saf.export.onnx_model import save_onnx_model  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402
from saf.train.checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from saf.train.functional.loss import ce_mse_loss  # noqa: E402
from saf.train.functional.neuron import bias_coeff  # noqa: E402
from saf.train.methods.registry import METHODS, readout_for, train_batch  # noqa: E402
from saf.train.modules.network import SpikingNet  # noqa: E402
from saf.train.readout import LEAKY_SUM, SUM  # noqa: E402
from saf.train.spec import load_spec, with_neuron  # noqa: E402


def _leaky(g, frac_bits=None):
    """The graph with its readout leaking with the network's decay, F_r = the spiking layers' F."""
    g = copy.deepcopy(g)
    g.layers[-1].decay = g.decay
    g.layers[-1].frac_bits = g.layers[0].frac_bits if frac_bits is None else frac_bits
    return g


def _exact_readout(g, last_spikes: np.ndarray) -> np.ndarray:
    """(sum_t lam^(T-t) (W s[t] + B)) << F in exact rationals from the last layer's spikes [N, T, n];
    asserts the value is an integer (the certificate's readout_leak condition)."""
    ro, T = g.readout, g.T
    lam = Fraction(4096 - g.decay, 4096)
    W = [[int(v) for v in row] for row in ro.weight]
    out = np.zeros((len(last_spikes), ro.n_out), dtype=np.int64)
    for n, s in enumerate(last_spikes):
        for c in range(ro.n_out):
            tot = sum(lam ** (T - 1 - t) * (sum(W[c][j] for j in np.flatnonzero(s[t])) + int(ro.bias[c]))
                      for t in range(T))
            v = tot * (1 << ro.frac_bits)
            assert v.denominator == 1, f"readout of sample {n} is not an integer: {v}"
            out[n, c] = int(v)
    return out


@pytest.mark.parametrize("arch,feedback", [("dense", False), ("dense", True), ("conv", False)])
def test_leaky_readout_is_exact_in_every_integer_form(arch, feedback, tmp_path):
    g = _leaky(random_graph(arch, T=6, lam=0.5, seed=3, feedback=feedback))
    xq = random_inputs(g, 12, seed=1)
    cert = certify(g)
    leak = [c for c in cert.checks if c.check == "readout_leak"]
    assert cert.exact and len(leak) == 1 and leak[0].ok and "F_r = 6 >= k(T-1) = 5" in leak[0].detail
    ref, ref_spikes, _ = reference_batch(g, xq)
    exact = _exact_readout(g, ref_spikes[-1])
    np.testing.assert_array_equal(ref, exact)                 # the oracle's integrator is the exact sum
    e = emulate(g, xq)
    s = run_saf_int(g, xq)
    save_onnx_model(g, tmp_path / "m.onnx")
    o = run_onnx(str(tmp_path / "m.onnx"), g, xq)
    for r in (e, s, o):
        np.testing.assert_array_equal(r.readout, exact, err_msg=r.backend)
    assert s.info["readout_exact"] is True
    # the leak matters: the plain sum of the same spikes is a different logit (so the checks can fail)
    plain = emulate(g, xq, readout_leak=False).readout
    assert (plain != exact).any()
    g0 = copy.deepcopy(g)
    g0.layers[-1].decay = 0
    np.testing.assert_array_equal(run_saf_int(g0, xq).readout, reference_batch(g0, xq)[0])


def test_readout_leak_certificate_conditions():
    """F_r < k(T-1): the truncating leak drops bits (not exact, and saf-int says its readout was
    floored); a non-dyadic lam leaks inexactly."""
    g = _leaky(random_graph("dense", T=9, lam=0.5, seed=2))          # F = 6 < k(T-1) = 8
    leak = [c for c in certify(g).checks if c.check == "readout_leak"][0]
    assert not leak.ok and "F_r = 6 < k(T-1) = 8" in leak.detail and not certify(g).exact
    xq = random_inputs(g, 20, seed=0)
    assert run_saf_int(g, xq).info["readout_exact"] is False
    g = _leaky(random_graph("dense", T=4, lam=0.9, seed=2))
    leak = [c for c in certify(g).checks if c.check == "readout_leak"][0]
    assert not leak.ok and "not a power of two" in leak.detail
    g = _leaky(random_graph("dense", T=6, lam=0.5, seed=3), frac_bits=0)  # leaking in integer units
    leak = [c for c in certify(g).checks if c.check == "readout_leak"][0]
    assert not leak.ok and "F_r = 0 < k(T-1) = 5" in leak.detail
    xq = random_inputs(g, 20, seed=0)
    assert run_saf_int(g, xq).info["readout_exact"] is False
    assert (run_saf_int(g, xq).readout != emulate(g, xq).readout).any()


def test_backend_ignoring_the_leak_is_caught(tmp_path):
    g = _leaky(random_graph("dense", T=6, lam=0.5, seed=5))
    xq = random_inputs(g, 30, seed=4)
    b = Bundle(path=None, manifest={}, graph=g)
    assert verify(b, xq, None, ["saf-int", "emulator"]).ok
    rep = verify(b, xq, None, ["saf-int", "emulator"], fault="readout-leak")
    assert not rep.ok
    bad = [p for p in rep.pairs if p["b"] == "emulator[readout-leak]" or p["a"] == "emulator[readout-leak]"]
    assert bad and all(p["spike_mismatches"] == 0 and p["readout_mismatches"] > 0 for p in bad)
    assert any("readout" in f and "emulator[readout-leak]" in f for f in rep.failures)
    # on a non-leaking readout the fault would change nothing: refused instead of passing vacuously
    with pytest.raises(BackendError, match="needs a bundle whose readout leaks"):
        run_backend("emulator", Bundle(None, {}, random_graph("dense", seed=5)), xq, fault="readout-leak")


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_stock_lava_readout_leaks_and_the_old_construction_is_caught(arch, monkeypatch):
    """Lava's stock backend (`lava`) builds its readout integrator with the readout's decay D_r and
    shift F_r: a leaking readout equals saf-int, the emulator and lava-own bit for bit. The old
    construction (Integrator without decay and shift) is injected and verify must catch it on the
    readouts alone (every spike still agrees)."""
    import saf.deploy.lava.stock as stock
    from saf.deploy.lava.procs.readout import Integrator

    g = _leaky(random_graph(arch, T=6, lam=0.5, seed=5))
    xq = random_inputs(g, 6, seed=4)
    b = Bundle(path=None, manifest={}, graph=g)
    rep = verify(b, xq, None, ["saf-int", "emulator", "lava", "lava-own"])
    assert rep.ok and rep.certificate["exact"], rep.failures
    assert all(p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 for p in rep.pairs)
    np.testing.assert_array_equal(run_backend("lava", b, xq, record_spikes=False).readout,
                                  _exact_readout(g, reference_batch(g, xq)[1][-1]))
    monkeypatch.setattr(stock, "Integrator", lambda **kw: Integrator(**{**kw, "decay": 0, "shift": 0}))
    rep = verify(b, xq, None, ["saf-int", "emulator", "lava"])
    assert not rep.ok
    bad = [p for p in rep.pairs if "lava" in (p["a"], p["b"])]
    assert len(bad) == 2 and all(p["spike_mismatches"] == 0 and p["readout_mismatches"] > 0 for p in bad)
    assert all(p["ok"] for p in rep.pairs if "lava" not in (p["a"], p["b"]))


def test_bundle_records_the_readout_decay(tmp_path):
    g = _leaky(random_graph("dense", T=6, lam=0.5, seed=1))
    write_bundle(g, tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["layers"][-1]["decay"] == 2048 and "decay" not in m["layers"][0]
    assert load_graph(tmp_path / "b").readout.decay == 2048
    # a manifest without "decay" on its readout (as written before leaking readouts) loads as the
    # non-leaking sum; the edits are resealed so the loader's schema check, not the digest, is tested
    del m["layers"][-1]["decay"]
    m["manifest_sha256"] = manifest_digest(m)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    assert load_graph(tmp_path / "b").readout.decay == 0
    m["layers"][-1]["decay"] = 1024
    m["manifest_sha256"] = manifest_digest(m)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="readout decay 1024 must be 0 or the network's decay 2048"):
        load_graph(tmp_path / "b")


def _net(readout, seed=0):
    torch.manual_seed(seed)
    return SpikingNet(with_neuron(load_spec("mlp-digits"), 0.5, 1.0), readout=readout).double()


def test_methods_record_the_readout_their_loss_sees():
    assert readout_for("saf-f") is LEAKY_SUM
    assert all(readout_for(m) is SUM for m in METHODS if m not in ("saf-f", "dsr", "ide"))
    assert readout_for("dsr").name == "spike_count"          # DSR's spiking output layer (train/methods/dsr/net.py)
    # IDE (docs/design.md#readouts): non-leaking for IF, leaking with lam for LIF
    assert readout_for("ide", 1.0) is SUM and readout_for("ide", 0.5) is LEAKY_SUM
    net = _net(LEAKY_SUM)
    x = torch.rand(16, 64, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    T = 6
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    r = train_batch(net, x, y, T, "saf-f", opt, lambda o, t: ce_mse_loss(o, t, 0.05), step_optimizer=False)
    saf, _ = net.infer(x, T, "saf")
    lif, _ = net.infer(x, T, "lif")
    # SAF-F's loss input times c[T] is the leaking readout, in the SAF form and the LIF form
    torch.testing.assert_close(r["logits"] * bias_coeff(T, 0.5), saf, rtol=0, atol=1e-12)
    torch.testing.assert_close(saf, lif, rtol=0, atol=1e-12)
    net.readout_kind = SUM
    plain, _ = net.infer(x, T, "saf")
    assert (plain - saf).abs().max() > 1e-3


def test_checkpoint_records_the_readout(tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, _net(LEAKY_SUM), {"method": "saf-f", "T": 6, "lam": 0.5})
    assert load_model(p)[0].readout_kind is LEAKY_SUM
    save_checkpoint(p, _net(SUM), {"method": "saf-e", "T": 6, "lam": 0.5})
    assert load_model(p)[0].readout_kind is SUM
    # an older checkpoint without the record: the non-leaking readout
    from safetensors import safe_open
    with safe_open(str(p), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(p))
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={k: v for k, v in meta.items() if k != "readout"})
    assert load_model(old)[0].readout_kind is SUM
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=dict(meta, readout='{"name": "softmax"}'))
    with pytest.raises(CheckpointError, match="unknown readout record"):
        load_model(bad)


SAFF_CKPT = pathlib.Path(__file__).parent / "golden" / "saf-f-digits" / "model.safetensors"


def test_saf_f_digits_net_deploys_the_readout_it_trained(tmp_path, capsys):
    """Done when 3. SAF-F-trained conv-digits (tests/golden/saf-f-digits: `saf train --model conv-digits
    --method saf-f --T 6 --lam 0.5 --epochs 8`): the manifest's readout leaks with decay 2048; the float
    SAF form's logits (sum_t lam^(T-t) o[t]) and the deployed readout give the same prediction on
    >= 99.5% of the test set; verify passes with Lava's stock model ("lava"), the own Processes
    ("lava-own"), saf-int, ONNX and the emulator."""
    from saf.deploy.main import main
    from saf.export.bundle.store import read_manifest
    from saf.train.data import load_dataset

    out = tmp_path / "b"
    assert main(["export", str(SAFF_CKPT), "--target", "loihi", "--calibrate-data", "digits", "--out", str(out)]) == 0
    capsys.readouterr()
    m = read_manifest(out)
    assert m["lam"] == 0.5 and m["decay"] == 2048 and m["meta"]["readout"] == "leaky-sum"
    assert m["layers"][-1]["kind"] == "readout" and m["layers"][-1]["decay"] == 2048
    assert m["certificate"]["exact"] and m["calibration"]["prediction_agreement"] >= 0.995
    assert main(["info", str(out)]) == 0 and "integrator leaking (decay D=2048)" in capsys.readouterr().out
    b = Bundle.load(out)
    data = load_dataset("digits")
    xq, y = b.graph.quantize_input(data.x_test.numpy()), data.y_test.numpy()
    rep = verify(b, xq, y, ["saf-int", "emulator", "onnx", "lava", "lava-own", "saf-float"], lava_limit=50)
    assert rep.ok, rep.failures
    assert rep.samples["lava"] == rep.samples["lava-own"] == 50 and rep.samples["saf-float"] == len(y) == 360
    assert all(p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 for p in rep.pairs)
    f2q = rep.float_to_quantized
    assert f2q["samples"] == 360 and f2q["prediction_agreement"] >= 0.995
    # the leak decides predictions here: a plain-sum deployment of the same spikes agrees on 358/360
    fl_all = run_backend("saf-float", b, xq, record_spikes=False).readout.argmax(1)
    assert (emulate(b.graph, xq).readout.argmax(1) == fl_all).sum() == 360
    assert (emulate(b.graph, xq, readout_leak=False).readout.argmax(1) == fl_all).sum() == 358
    # the deployed readout on Lava predicts what the float SAF form predicts
    fl = run_backend("saf-float", b, xq[:50], record_spikes=False).readout.argmax(1)
    lava = run_backend("lava", b, xq[:50], record_spikes=False).readout
    np.testing.assert_array_equal(lava, run_saf_int(b.graph, xq[:50]).readout)
    assert (lava.argmax(1) == fl).mean() >= 0.98


def test_eval_uses_the_recorded_readout(capsys):
    """`saf eval` evaluates the SAF-F checkpoint with the leaking readout it trained, and says so."""
    from saf.deploy.main import main
    from saf.deploy.cli.train import eval_checkpoint

    r = eval_checkpoint(SAFF_CKPT)
    assert r["readout"] == "leaky-sum" and r["readout_leak"] == 0.5 and r["n"] == 360
    assert r["saf_accuracy"] >= 0.97 and r["prediction_agreement"] == 1.0
    assert main(["eval", str(SAFF_CKPT)]) == 0
    assert "readout leaky-sum (leak 0.5 per step, as trained)" in capsys.readouterr().out
