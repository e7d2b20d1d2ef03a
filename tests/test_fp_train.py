"""`saf train --method fp` / `saf eval` on an FP run, the FP checkpoint, the FP datasets and the
first-spike readout record (train/methods/fp/train.py, train/methods/fp/net.py, train/data/yinyang.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saf.deploy.main import main
from saf.train.checkpoint import CheckpointError, load_model
from saf.train.data import load_dataset
from saf.train.methods.fp.train import Adam, batch_gradient, config_for, evaluate_fp
from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode
from saf.train.methods.fp.checkpoint import is_fp_checkpoint
from saf.train.methods.fp.checkpoint import load_fp_checkpoint, save_fp_checkpoint
from saf.train.methods.fp.specs import FP_SPECS
from saf.train.data.yinyang import generate, yinyang_class
from saf.train.readout import FIRST_SPIKE, readout_from_json
from saf_test_helpers.cli import user_error

TINY = ["--method", "fp", "--model", "fp-iris", "--dataset", "iris", "--limit-train", "32", "--batch-size", "8",
        "--no-progress"]



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out




def test_train_writes_a_run_and_eval_reads_it(run, capsys):
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "curves.png", "metrics.jsonl",
                                                     "model.safetensors"]
    ms = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in ms] == [1, 2]
    for k in ("train_loss", "train_acc", "val_acc", "test_acc", "silent_outputs", "silent_labels", "grazing",
              "near_equal_rates"):
        assert k in ms[-1]
    assert is_fp_checkpoint(run) and is_fp_checkpoint(run / "model.safetensors")
    net, cfg = load_fp_checkpoint(run)
    assert cfg["method"] == "fp" and cfg["model"] == "fp-iris" and cfg["dataset"] == "iris" and cfg["seed"] == 0
    assert net.sizes == [5, 10, 3] and net.params == FP_SPECS["fp-iris"].params      # 4 features + the bias spike
    capsys.readouterr()
    assert main(["eval", str(run), "--json", "--checkpoint", "last"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["readout"] == "first_spike" and r["n"] == 30
    # the reloaded checkpoint's accuracy, recomputed by a per-sample simulation, is the one logged
    d = load_dataset("iris")
    t = net.code.encode(d.x_test.numpy())
    first = np.array([[ls[0] if ls.size else np.inf for ls in net.layer_spikes(t[s])[-1]] for s in range(len(t))])
    acc = float(np.mean(np.argmin(first, axis=1) == d.y_test.numpy()))
    assert acc == r["accuracy"] == ms[-1]["test_acc"]


def test_same_seed_same_weights(run, tmp_path):
    out = tmp_path / "again"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    a, _ = load_fp_checkpoint(run)
    b, _ = load_fp_checkpoint(out)
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights))


@pytest.mark.parametrize("flag,value", [("--T", "4"), ("--lam", "0.5"), ("--surrogate", "rect"), ("--optimizer", "sgd")])
def test_flags_fp_does_not_use_are_refused(tmp_path, capsys, flag, value):
    user_error(capsys, ["train", *TINY, flag, value, "--out", str(tmp_path / "r")], flag, "--method fp")
    assert not (tmp_path / "r").exists()


def test_bad_fp_input_one_line(tmp_path, capsys):
    user_error(capsys, ["train", "--method", "fp", "--model", "mlp-digits", "--out", str(tmp_path / "r")], "--model")
    user_error(capsys, ["train", *TINY, "--lr", "-1", "--out", str(tmp_path / "r")], "--lr")
    user_error(capsys, ["train", *TINY, "--resume", "--out", str(tmp_path / "r")], "--resume")
    user_error(capsys, ["train", "--method", "fp", "--model", "fp-xor", "--dataset", "iris", "--out",
                        str(tmp_path / "r")], "fp-xor", "iris")
    assert not (tmp_path / "r").exists()


def test_checkpoint_round_trip_and_corruption(tmp_path, capsys):
    rng = np.random.default_rng(0)
    code = LatencyCode((0.0, -1.0), (1.0, 2.0), 0.15, 2.0, (0.9,))
    net = FPNet(FPParams(0.999, 1.0, 1.0, 2.0, 6.0), [rng.normal(1.5, 0.8, (5, 3)), rng.normal(2, 0.1, (3, 5))], code)
    p = tmp_path / "m.safetensors"
    save_fp_checkpoint(p, net, {"dataset": "yinyang", "model": "fp-yinyang", "seed": 3})
    back, cfg = load_fp_checkpoint(p)
    assert back.params == net.params and back.code == net.code and cfg["seed"] == 3
    t = code.encode(rng.random((6, 2)))
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))
    assert np.array_equal(back.first_spikes(t), net.first_spikes(t))
    with pytest.raises(CheckpointError, match="load_fp_checkpoint"):
        load_model(p)                                              # the time-stepped loader refuses it clearly
    raw = p.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[:len(raw) - 9])                            # truncated
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_fp_checkpoint(bad)
    user_error(capsys, ["eval", str(bad)], "bad.safetensors")
    meta_bad = tmp_path / "meta.safetensors"
    meta_bad.write_bytes(raw.replace(b'\\"theta\\": 1.0', b'\\"theta\\": 0.0'))   # same length header, bad value
    assert meta_bad.read_bytes() != raw
    with pytest.raises(CheckpointError, match="theta"):
        load_fp_checkpoint(meta_bad)


def test_first_spike_readout_record():
    assert readout_from_json(FIRST_SPIKE.to_json()) is FIRST_SPIKE and not FIRST_SPIKE.leaks_with_lam


def test_xor_and_yinyang_datasets():
    x = load_dataset("xor")
    assert x.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and x.y_train.tolist() == [0, 1, 1, 0]
    a, b = generate(300, 7), generate(300, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])          # deterministic by seed
    assert np.allclose(a[0][:, 2:], 1 - a[0][:, :2])
    assert np.all(np.bincount(a[1], minlength=3) > 70)                        # balanced by rejection sampling
    assert np.all(np.hypot(a[0][:, 0] - 0.5, a[0][:, 1] - 0.5) <= 0.5)
    assert [yinyang_class(*p) for p in [(0.75, 0.5), (0.25, 0.5), (0.5, 0.9), (0.5, 0.1)]] == [2, 2, 0, 1]
    assert all(yinyang_class(x_, y_) == c for (x_, y_, _, _), c in zip(a[0], a[1]))


def test_xor_trains_to_100_percent():
    """fp-xor, the paper's Table 1 settings: converges within the paper's worst case (98 steps)."""
    from saf.train.methods.fp.train import init_net, make_code
    spec = FP_SPECS["fp-xor"]
    d = load_dataset("xor")
    code = make_code(spec, d.x_train.numpy())
    net = init_net(spec, code, 2, np.random.default_rng(0))
    t, y = code.encode(d.x_train.numpy()), d.y_train.numpy()
    opt = Adam(net.weights, spec.lr)
    for step in range(98):
        if evaluate_fp(net, t, y)["accuracy"] == 1.0:
            break
        opt.step(net.weights, batch_gradient(net, spec, t, y, "forward")["grads"])
    assert evaluate_fp(net, t, y)["accuracy"] == 1.0


def test_config_defaults_are_the_spec_values():
    c = config_for(FP_SPECS["fp-yinyang"])
    assert (c.lr, c.batch_size, c.epochs, c.grad) == (5e-4, 150, 300, "adjoint")
    assert config_for(FP_SPECS["fp-iris"], lr=0.01).lr == 0.01


def _euler_peak(alpha, beta, w, s, t_sim, dt=1e-3):
    """max_t V(t) of one two-state neuron fed spikes at times s with weights w, by forward Euler of
    dI/dt = -alpha I (+ w at each spike), dV/dt = -beta V + I: independent of kernel.h."""
    steps = int(round(t_sim / dt))
    kicks = np.zeros(steps + 1)
    np.add.at(kicks, np.minimum(np.round(np.asarray(s) / dt).astype(int), steps), w)
    I = V = best = 0.0
    for k in range(steps + 1):
        I += kicks[k]
        V += dt * (I - beta * V)
        I -= dt * alpha * I
        best = max(best, V)
    return best


def test_silent_label_neuron_is_revived_towards_threshold():
    """A sample whose label output is silent: the exact gradient is zero for that neuron, the stated
    surrogate (train/methods/fp/train.py revive_gradient) is -slope dV_y(t*)/dW, checked against
    finite differences of the peak of a forward-Euler potential and the loss slope of first_spike_loss."""
    from saf.train.methods.fp.loss import first_spike_loss
    from saf.train.methods.fp.train import make_code, revive_gradient

    spec = FP_SPECS["fp-iris"]
    p = spec.params
    x = load_dataset("iris").x_train.numpy().astype(np.float64)
    code = make_code(spec, x)
    t_in = code.encode(x[:1])
    W = np.full((3, code.n_inputs), 3.0)
    W[0] = 0.04                                       # label 0: far below threshold, silent
    net = FPNet(p, [W], code)
    y = np.array([0])
    r = batch_gradient(net, spec, t_in, y)
    assert r["silent_labels"] == 1 and not np.isfinite(r["first"][0, 0])
    first = r["first"]
    g, n = revive_gradient(net, [(t_in[0], np.arange(code.n_inputs))], first, y, spec, p.t_sim)
    assert n == 1 and not g[1:].any() and (g[0] < 0).all()            # only the label row, pushed up
    assert np.allclose(r["grads"][0][0], g[0])                         # the exact part of row 0 is zero
    f = np.where(np.isfinite(first), first, p.t_sim)
    slope = first_spike_loss(f, y, spec.tau0, spec.tau1, spec.gamma, p.t_sim)[1][0, 0]
    eps = 1e-3
    fd = []
    for j in range(code.n_inputs):
        up, dn = W[0].copy(), W[0].copy()
        up[j] += eps
        dn[j] -= eps
        fd.append((_euler_peak(p.alpha, p.beta, up, t_in[0], p.t_sim)
                   - _euler_peak(p.alpha, p.beta, dn, t_in[0], p.t_sim)) / (2 * eps))
    assert np.allclose(g[0], -slope * np.array(fd), rtol=3e-2, atol=1e-4), (g[0], -slope * np.array(fd))
    # nothing silent: no surrogate, the gradient is exactly FP's
    W2 = np.full((3, code.n_inputs), 3.0)
    g2, n2 = revive_gradient(FPNet(p, [W2], code), [(t_in[0], np.arange(code.n_inputs))],
                             FPNet(p, [W2], code).first_spikes(t_in), y, spec, p.t_sim)
    assert n2 == 0 and not g2.any()


def test_iris_validation_split_is_stratified(tmp_path):
    from saf.train.methods.fp.train import FPTrainer

    cfg = config_for(FP_SPECS["fp-iris"], dataset="iris", epochs=1)
    tr = FPTrainer(cfg, tmp_path / "r", load_dataset("iris"), progress=False, log=lambda *a: None)
    assert len(tr.y_train) == 108 and np.bincount(tr.y_val).tolist() == [4, 4, 4]
