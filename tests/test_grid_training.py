"""Training on the deployment grid (issue 28): the grid forward is the deployed integer network spike for spike,
potential for potential; export writes the checkpoint's integers bit for bit and refuses a tampered one; verify's
trained pair catches a fault; eval's accuracy is the deployed accuracy; FP refuses the flag in one line.
sklearn digits, small nets, a few batches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from saf.deploy.backends.emulator import emulate
from saf.deploy.backends.registry import Bundle, inject_fault, run_backend
from saf.deploy.cli.main import main
from saf.deploy.cli.train import eval_checkpoint
from saf.export.pipeline.grid import calibrate_grid, grid_graph, on_grid_check
from saf.export.proof.saf_int import run_saf_int
from saf.hw_targets import get_target
from saf.train.data import load_dataset
from saf.train.grid.forward import grid_run, int_weights
from saf.train.methods.registry import readout_for
from saf.train.modules.network import SpikingNet
from saf.train.spec import load_spec, with_neuron

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", T=4)


def _grid_net(data, model="mlp-digits", method="saf-e", lam=0.5, T=4, target="loihi", seed=0, modes=()):
    torch.manual_seed(seed)
    spec = with_neuron(load_spec(model), lam, 1.0)
    spiking = [l for l in spec["layers"] if l["type"] in ("conv", "linear")]
    for layer, (reset, compare) in zip(spiking, modes):     # per-layer neuron modes (imported nets)
        layer.update(reset=reset, compare=compare)
    spec["T"] = T
    net = SpikingNet(spec, readout=readout_for(method, lam))
    net.grid = calibrate_grid(net, {"method": method, "T": T}, data, target)
    stored = int_weights(net, net.grid)
    return net, grid_graph(net, net.grid, stored, get_target(target), {}, "test"), stored


def _grid_forward(net, x):
    R, recs = grid_run(net, net.grid, x, record=True)
    sp = [np.stack([r.spikes[l].flatten(1).numpy() > 0.5 for r in recs], 1) for l in range(net.n_spiking)]
    pots = [np.stack([r.potentials[l].flatten(1).numpy() for r in recs], 1).astype(np.int64)
            for l in range(net.n_spiking)]
    return R.numpy().astype(np.int64), sp, pots


def _same(ref, R, sp, pots) -> bool:
    return (np.array_equal(ref.readout, R) and all(np.array_equal(a, b) for a, b in zip(ref.spikes, sp))
            and all(np.array_equal(a, b) for a, b in zip(ref.potentials, pots)))


@pytest.mark.parametrize("model,method,lam", [("mlp-digits", "saf-e", 0.5), ("conv-digits", "saf-f", 0.5),
                                              ("mlp-digits", "bptt", 0.75)])
def test_grid_forward_is_the_integer_network(digits, model, method, lam):
    """Every spike, potential (V after saturation, before reset) and readout of the grid forward equals the
    emulator's and (dyadic leak) saf-int's; the same comparison fails on a graph one LSB off."""
    net, g, _ = _grid_net(digits, model, method, lam)
    x = digits.x_test[:40]
    R, sp, pots = _grid_forward(net, x)
    xq = g.quantize_input(x.numpy())
    emu = emulate(g, xq, record_potentials=True)
    assert sum(int(s.sum()) for s in sp) > 0 and np.abs(R).max() > 0        # a network that does something
    assert _same(emu, R, sp, pots)
    sai = run_saf_int(g, xq, record_potentials=True)
    assert _same(sai, R, sp, pots)
    if method == "saf-f":
        assert g.readout.decay == g.decay                  # the leaking readout, truncated as Loihi does
    bad, opts = inject_fault(g, "lsb")
    assert not _same(emulate(bad, xq, record_potentials=True, **opts), R, sp, pots)


@pytest.mark.parametrize("lam", [0.5, 0.9])
def test_grid_forward_runs_each_layers_neuron_modes(digits, lam):
    """Zero reset with > (NIR's default) and snnTorch's subtract-undecayed: the grid forward equals the emulator,
    and saf-int where the leak is dyadic; a hard-reset fault is caught."""
    net, g, _ = _grid_net(digits, method="bptt", lam=lam, modes=[("zero", ">"), ("subtract-undecayed", ">=")])
    assert [l.reset for l in g.spiking_layers] == ["zero", "subtract-undecayed"]
    x = digits.x_test[:40]
    R, sp, pots = _grid_forward(net, x)
    xq = g.quantize_input(x.numpy())
    assert sum(int(s.sum()) for s in sp) > 0
    assert _same(emulate(g, xq, record_potentials=True), R, sp, pots)
    if lam == 0.5:
        assert _same(run_saf_int(g, xq, record_potentials=True), R, sp, pots)
    bad, opts = inject_fault(g, "hard-reset")
    assert not _same(emulate(bad, xq, record_potentials=True, **opts), R, sp, pots)


def test_grid_forward_non_dyadic_leak_truncates_like_loihi(digits):
    """lam = 0.3 (no exact SAF form): the grid forward still equals the emulator bit for bit (truncation)."""
    net, g, _ = _grid_net(digits, lam=0.3)
    x = digits.x_test[:40]
    R, sp, pots = _grid_forward(net, x)
    assert _same(emulate(g, g.quantize_input(x.numpy()), record_potentials=True), R, sp, pots)


def test_grid_gradient_reaches_every_weight(digits):
    from saf.train.functional.loss import ce_mse_loss
    from saf.train.methods.registry import train_batch

    net, _, _ = _grid_net(digits)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    train_batch(net, digits.x_train[:32], digits.y_train[:32], 4, "saf-e", opt, lambda o, t: ce_mse_loss(o, t, 0.05))
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads)


@pytest.fixture(scope="module")
def grid_run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    rc = main(["train", "--model", "mlp-digits", "--dataset", "digits", "--method", "saf-e", "--T", "4",
               "--epochs", "2", "--limit-train", "400", "--deploy-target", "loihi", "--no-progress",
               "--out", str(d / "run")])
    assert rc == 0
    rc = main(["export", str(d / "run"), "--target", "loihi", "--calibrate-data", "digits", "--out", str(d / "b")])
    assert rc == 0
    return d


def test_checkpoint_is_the_bundle_bit_for_bit(grid_run_dir):
    ck = load_file(str(grid_run_dir / "run" / "best.safetensors"))
    w = np.load(grid_run_dir / "b" / "weights.npz")
    ints = [k for k in ck if k.startswith("grid_int.") and k.endswith(".weight")]
    assert len(ints) == 3
    b = Bundle.load(grid_run_dir / "b")
    for i, layer in enumerate(b.graph.layers):
        assert np.array_equal(layer.weight, ck[f"grid_int.{i}.weight"].numpy())
        assert np.array_equal(layer.bias, ck[f"grid_int.{i}.bias"].numpy())
    assert len(w.files) > 0
    assert b.graph.meta["trained_on_grid"]


def test_eval_accuracy_is_the_deployed_accuracy(grid_run_dir, digits):
    from saf.train.checkpoint import load_model
    from saf.train.evaluate import evaluate

    ck = grid_run_dir / "run" / "best.safetensors"
    r = eval_checkpoint(ck)
    b = Bundle.load(grid_run_dir / "b")
    emu = run_backend("emulator", b, b.graph.quantize_input(digits.x_test.numpy()), record_spikes=False)
    correct = int((emu.readout.argmax(1) == digits.y_test.numpy()).sum())
    n = len(digits.y_test)
    assert round(r["saf_accuracy"] * n) == correct and round(r["lif_accuracy"] * n) == correct   # saf eval's lines
    net, _, _ = load_model(ck)
    preds = evaluate(net, digits.x_test, digits.y_test, 4)["predictions"].numpy()
    assert np.array_equal(preds, emu.readout.argmax(1))                # same prediction on every test sample
    trained = run_backend("trained", b, b.graph.quantize_input(digits.x_test.numpy()), record_spikes=False)
    assert np.array_equal(trained.readout, emu.readout)


def _tampered(src: Path, dst: Path, key: str, delta) -> Path:
    from saf.core.files import header_metadata
    t = load_file(str(src))
    t[key] = t[key].clone()
    flat = t[key].view(-1)
    flat[int(torch.argmax(flat.abs()))] += delta
    save_file(t, str(dst), metadata=header_metadata(src))
    return dst


@pytest.mark.parametrize("key,delta", [("blocks.0.weight", 0.5), ("grid_int.1.weight", 2)])
def test_tampered_checkpoint_is_refused(grid_run_dir, tmp_path, capsys, key, delta):
    from saf.train.checkpoint import load_model
    from saf.train.grid.store import split_grid, stored_list

    bad = _tampered(grid_run_dir / "run" / "best.safetensors", tmp_path / "bad.safetensors", key, delta)
    net, _, _ = load_model(bad)
    stored = stored_list(split_grid(load_file(str(bad)))[1], 3, "bad")
    good = Bundle.load(grid_run_dir / "b").graph
    row = on_grid_check(net, net.grid, stored, good)
    assert not row.ok and "not on the recorded grid" in row.detail
    capsys.readouterr()
    rc = main(["export", str(bad), "--target", "loihi", "--calibrate-data", "digits", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not on the recorded grid" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()
    good_net, _, _ = load_model(grid_run_dir / "run" / "best.safetensors")
    ok_row = on_grid_check(good_net, good_net.grid, int_weights(good_net, good_net.grid), good)
    assert ok_row.ok


def test_verify_trained_pair_catches_a_fault(grid_run_dir, capsys):
    b = str(grid_run_dir / "b")
    rc = main(["verify", b, "--backends", "saf-int,trained", "--limit", "40", "--no-progress",
               "--out", str(grid_run_dir / "v1")])
    out = capsys.readouterr().out
    assert rc == 0 and "OK   saf-int vs trained on 40: 0 mismatching spikes" in out and "exact required" in out
    rc = main(["verify", b, "--backends", "saf-int,trained", "--limit", "40", "--no-progress", "--inject-fault",
               "lsb", "--out", str(grid_run_dir / "v2")])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL trained vs emulator[lsb]" in out


def test_fp_refuses_deploy_target_in_one_line(tmp_path, capsys):
    rc = main(["train", "--method", "fp", "--deploy-target", "loihi", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "approximate by nature" in err
    assert not (tmp_path / "r").exists()


def test_finetune_a_float_run_onto_the_grid(tmp_path, capsys):
    """saf finetune: a float-trained run continues on the grid into a new run whose export is its own integers
    (on_grid row) and whose eval accuracy is the deployed one; the source run is left as it was."""
    import json

    src = tmp_path / "float"
    assert main(["train", "--model", "mlp-digits", "--method", "saf-e", "--T", "4", "--epochs", "1",
                 "--limit-train", "300", "--no-progress", "--out", str(src)]) == 0
    before = (src / "model.safetensors").read_bytes()
    assert main(["finetune", str(src), "--deploy-target", "onnx", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0
    assert (src / "model.safetensors").read_bytes() == before
    assert main(["export", str(tmp_path / "ft"), "--target", "onnx", "--calibrate-data", "digits",
                 "--out", str(tmp_path / "b")]) == 0
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    rows = {c["check"]: c["ok"] for c in m["certificate"]["checks"]}
    cal = m["calibration"]
    assert rows["on_grid"] and m["certificate"]["exact"]
    n = cal["n"]                            # the float accuracy is a float32 mean: compare the counts
    assert round(cal["float_accuracy"] * n) == round(cal["quantized_accuracy"] * n)
    assert cal["prediction_agreement"] == 1.0


def test_one_epoch_calibrates_at_init_and_an_explicit_conflict_is_one_line(tmp_path, capsys):
    from saf.train.checkpoint import load_model

    assert main(["train", "--model", "mlp-digits", "--T", "4", "--epochs", "1", "--limit-train", "200",
                 "--deploy-target", "onnx", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    net, _, cfg = load_model(tmp_path / "r" / "model.safetensors")
    assert net.grid is not None and net.grid.target == "onnx" and cfg["calibrate_epochs"] == 0
    assert main(["train", "--resume", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    again, _, cfg = load_model(tmp_path / "r" / "model.safetensors")     # resumed on the same grid
    assert again.grid == net.grid and cfg["epochs_done"] == 2
    capsys.readouterr()
    rc = main(["train", "--model", "mlp-digits", "--epochs", "1", "--calibrate-epochs", "1", "--deploy-target",
               "loihi", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--calibrate-epochs 1" in err
    assert not (tmp_path / "r2").exists()
