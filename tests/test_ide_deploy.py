"""IDE deploys exactly (docs/methods.md#i6-exact-deployment-of-a-trained-net): the pinned IDE-trained digits nets export to Loihi with an
EXACT certificate and every integer form, Lava included, agrees spike for spike; the spectrally
normalised feedback is folded from its stored power-iteration vectors; the paper's CIFAR nets, whose
feedback is a stride-2 ConvTranspose the IR cannot hold, are refused at export with the reason.

tests/golden/ide-digits:     `saf train --method ide --model ide-digits --lam 1 --epochs 20` (T 6)
tests/golden/ide-digits-lif: `saf train --method ide --model ide-digits --lam 0.5 --epochs 20` (T 6)
"""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from saf.deploy.backends.registry import Bundle
from saf.deploy.main import main
from saf.deploy.verify import verify
from saf.export.bundle.store import read_manifest
from saf.export.fold.snn import fold_network
from saf.train.checkpoint import load_model, save_checkpoint
from saf.train.data import load_dataset
from saf.train.evaluate import evaluate
from saf.train.modules.network import SpikingNet
from saf.train.spec import SpecError, builtin_spec, plan, with_neuron

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.mark.parametrize("name,lam,readout,decay", [("ide-digits", 1.0, "sum", 0),
                                                    ("ide-digits-lif", 0.5, "leaky-sum", 2048)])
def test_ide_digits_trains_and_deploys_exactly(name, lam, readout, decay, tmp_path, capsys):
    ckpt = GOLDEN / name / "model.safetensors"
    net, spec, cfg = load_model(ckpt)
    assert cfg["method"] == "ide" and cfg["epochs_done"] == 20 and net.lam == lam and net.theta == 2.0
    assert net.readout_kind.name == readout                   # docs/design.md#readouts: IF sum, LIF leaks with lam
    data = load_dataset("digits")
    assert evaluate(net, data.x_test, data.y_test, cfg["T"], "saf")["accuracy"] >= 0.97
    out = tmp_path / "b"
    assert main(["export", str(ckpt), "--target", "loihi", "--calibrate-data", "digits", "--out", str(out)]) == 0
    capsys.readouterr()
    m = read_manifest(out)
    assert m["certificate"]["exact"] and m["decay"] == decay and m["layers"][-1]["decay"] == decay
    assert [(f["src"], f["dst"]) for f in m["feedback"]] == [(0, 0)]
    b = Bundle.load(out)
    xq, y = b.graph.quantize_input(data.x_test.numpy()), data.y_test.numpy()
    rep = verify(b, xq, y, ["saf-int", "emulator", "onnx", "lava-own", "saf-float"], lava_limit=40)
    assert rep.ok, rep.failures
    assert rep.samples["lava-own"] == 40 and rep.samples["saf-int"] == 360
    assert all(p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 for p in rep.pairs)
    assert rep.float_to_quantized["prediction_agreement"] >= 0.99


def test_spectral_feedback_is_folded_from_the_stored_vectors():
    """Export computes clamp(g) V / sigma from the stored u, v (no power iteration: the buffers are
    unchanged and folding twice gives the same bits); ||W||_2 <= 1 (= V_th / 2) on the trained net."""
    net, _, _ = load_model(GOLDEN / "ide-digits" / "model.safetensors")
    fb = net.fb[0]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _, f1 = fold_network(net)
    _, f2 = fold_network(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert np.array_equal(f1[0].weight, f2[0].weight)
    np.testing.assert_array_equal(f1[0].weight, fb.effective_weight().detach().double().numpy())
    g = min(1.0, float(fb.sn_g.detach()))
    assert abs(np.linalg.norm(f1[0].weight, 2) - g) < 1e-3 and np.linalg.norm(f1[0].weight, 2) <= 1.0 + 1e-3
    # the check can fail: one more power iteration changes the folded weight
    fb.power_iteration(1)
    assert not np.array_equal(fold_network(net)[1][0].weight, f1[0].weight)


def _small_transposed_spec() -> dict:
    return {"name": "tiny-f-u", "input_shape": [1, 8, 8], "num_classes": 10, "neuron": {"theta": 2.0},
            "layers": [{"type": "conv", "out": 4, "kernel": 3, "stride": 1, "padding": 1},
                       {"type": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1}],
            "feedback": [{"src": 1, "dst": 0, "norm": "spectral", "transposed": True, "kernel": 3,
                          "padding": 1, "stride": 2, "output_padding": 1}]}


def test_transposed_conv_feedback_trains_but_is_refused_at_export(tmp_path, capsys):
    spec = with_neuron(_small_transposed_spec(), 1.0, None)
    net = SpikingNet(spec)
    x = torch.rand(2, 1, 8, 8)
    o, _ = net.infer(x, 3)
    assert o.shape == (2, 10)
    # the edge is a real stride-2 ConvTranspose: layer 2's 4x4 map feeds layer 1's 8x8 map
    assert plan(spec).feedback[0].transposed and net.fb[0](torch.rand(2, 4, 4, 4)).shape == (2, 4, 8, 8)
    ckpt = tmp_path / "model.safetensors"
    save_checkpoint(ckpt, net, {"method": "ide", "T": 3, "dataset": "digits"})
    out = tmp_path / "b"
    assert main(["export", str(ckpt), "--target", "loihi", "--input-scale", "16", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transposed-conv edge" in err and "refused" in err
    assert not out.exists()


def test_transposed_edges_are_validated():
    spec = _small_transposed_spec()
    spec["feedback"][0]["norm"] = "none"
    with pytest.raises(SpecError, match="needs \"norm\": \"spectral\""):
        plan(spec)
    spec = _small_transposed_spec()
    spec["feedback"][0]["output_padding"] = 0            # 4x4 -> 7x7, not the destination's 8x8
    with pytest.raises(SpecError, match="cannot produce"):
        plan(spec)
    spec = _small_transposed_spec()
    spec["feedback"][0]["norm"] = "batch"
    with pytest.raises(SpecError, match="unknown norm"):
        plan(spec)


@pytest.mark.parametrize("name,paper", [("ide-mnist", 229_514), ("ide-fmnist", 478_010),
                                        ("ide-alexnetf-cifar", 3_705_000)])
def test_paper_networks_have_the_papers_parameter_counts(name, paper):
    """docs/methods.md#ide-paper-networks (229.5K, 478K, 3.705M) without this project's sWS gains and the SN scale g."""
    net = SpikingNet(with_neuron(builtin_spec(name), 1.0, None))
    n = sum(p.numel() for k, p in net.named_parameters() if not k.endswith(("gain", "sn_g")))
    assert abs(n - paper) <= (paper // 1000 if name.startswith("ide-alexnet") else 0), n


def test_ide_solver_flags_are_checked(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--method", "ide", "--model", "ide-digits", "--ide-max-iter", "0", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ide-max-iter" in err and not out.exists()


def test_ide_lif_with_the_papers_lam_is_certified_not_exact(tmp_path, capsys):
    """IDE-LIF's lam = 0.95 (the paper's) is not dyadic: export says NOT EXACT, naming the leak and the
    leaking readout (docs/design.md#non-dyadic-leaks); the same net at lam = 0.5 is exact (the test above)."""
    from saf.train.readout import LEAKY_SUM
    torch.manual_seed(0)
    net = SpikingNet(with_neuron(builtin_spec("ide-digits"), 0.95, None), readout=LEAKY_SUM)
    ckpt = tmp_path / "model.safetensors"
    save_checkpoint(ckpt, net, {"method": "ide", "T": 6, "dataset": "digits"})
    out = tmp_path / "b"
    assert main(["export", str(ckpt), "--target", "loihi", "--input-scale", "16", "--out", str(out)]) == 0
    assert "certificate: NOT EXACT" in capsys.readouterr().out
    cert = read_manifest(out)["certificate"]
    assert not cert["exact"]
    failed = {c["check"] for c in cert["checks"] if not c["ok"]}
    assert {"leak", "readout_leak"} <= failed


def test_ide_with_ddp_is_refused(tmp_path):
    """IDE's backward runs outside the DDP wrapper, so `--ddp --method ide` is one clear refusal."""
    from saf.train.run.trainer import TrainConfig, Trainer, TrainingError
    with pytest.raises(TrainingError, match="--ddp is not supported"):
        Trainer(TrainConfig(method="ide", model="ide-digits"), tmp_path / "r", load_dataset("digits"),
                ddp=object())
