"""`saf train` / `saf eval` end to end on a tiny budget (digits, 128 training samples, 1-2 epochs),
through the real dispatcher deploy.main.main(argv) in-process (one run through the installed `saf`
script): outputs, resume, and every bad input giving exit code 2 with one stderr line naming it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import saf.train.run.trainer as trainer_mod
from saf.deploy.main import main
from saf_test_helpers.cli import user_error

torch.set_num_threads(1)

TINY = ["--model", "mlp-digits", "--dataset", "digits", "--limit-train", "128", "--batch-size", "64",
        "--T", "4", "--device", "cpu", "--no-progress"]



def train(out, *extra, epochs=1):
    return main(["train", *TINY, "--epochs", str(epochs), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run1"
    assert train(out) == 0
    return out


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """The uninterrupted two-epoch run every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("cli") / "run2"
    assert train(out, epochs=2) == 0
    return out


def metrics(out):
    return [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def weights(out):
    return load_file(str(Path(out) / "model.safetensors"))


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return sorted(wa) == sorted(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


# ------------------------------------------------------------------------------------ outputs

def test_train_writes_outputs(run1):
    names = sorted(p.name for p in run1.iterdir())
    assert names == ["best.safetensors", "curves.png", "metrics.jsonl", "model.safetensors", "resume.pt"]
    m = metrics(run1)
    assert len(m) == 1 and m[0]["epoch"] == 1
    assert m[0]["lr"] == 0.1                                   # the lr the epoch trained with
    assert 0.0 < m[0]["train_loss"] < 10 and 0.0 <= m[0]["test_acc"] <= 1.0
    assert len(m[0]["firing_rates"]) == 2 and all(0.0 < r < 1.0 for r in m[0]["firing_rates"])
    assert (run1 / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with safe_open(str(run1 / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    assert cfg["method"] == "saf-e" and cfg["epochs_done"] == 1 and cfg["limit_train"] == 128
    assert json.loads(meta["spec"])["T"] == 4
    st = torch.load(run1 / "resume.pt", weights_only=True)
    assert st["epoch"] == 1


def test_eval_prints_both_forms(run1, capsys):
    capsys.readouterr()
    assert main(["eval", str(run1)]) == 0
    out = capsys.readouterr().out
    assert "SAF form accuracy" in out and "LIF form accuracy" in out and "T=4" in out
    assert main(["eval", str(run1 / "model.safetensors"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 360 and r["T"] == 4
    assert r["saf_accuracy"] == pytest.approx(metrics(run1)[0]["test_acc"], abs=1e-6)
    assert 0.0 <= r["lif_accuracy"] <= 1.0 and r["prediction_agreement"] > 0.9


# ------------------------------------------------------------------------------------ resume

def test_resume_extends_to_the_uninterrupted_run(run1, run2, tmp_path):
    out = tmp_path / "ext"
    shutil.copytree(run1, out)
    assert train(out, "--resume", epochs=2) == 0
    m, ref = metrics(out), metrics(run2)
    assert [e["epoch"] for e in m] == [1, 2]
    assert m[0] == metrics(run1)[0]                             # history kept as written
    for a, b in zip(m, ref):
        assert (a["train_loss"], a["test_acc"], a["lr"]) == (b["train_loss"], b["test_acc"], b["lr"])
    assert m[1]["lr"] == 0.05                                   # cosine over 2 epochs, not lr 0
    assert same_weights(out, run2)


def test_resume_after_interrupt(run2, tmp_path, monkeypatch, capsys):
    out = tmp_path / "int"
    real = trainer_mod.Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", interrupted)
    assert train(out, epochs=2) == 130
    assert "interrupted" in capsys.readouterr().err
    assert [e["epoch"] for e in metrics(out)] == [1]            # epoch 1's checkpoint survives
    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", real)
    assert train(out, "--resume", epochs=2) == 0
    assert same_weights(out, run2)
    assert [e["train_loss"] for e in metrics(out)] == [e["train_loss"] for e in metrics(run2)]


def test_resume_without_state(tmp_path, capsys):
    user_error(capsys, ["train", *TINY, "--out", str(tmp_path / "none"), "--resume"], "nothing to resume",
               str(tmp_path / "none"))


def test_resume_with_another_model(run1, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(run1, out)
    argv = ["train", *TINY, "--epochs", "2", "--out", str(out), "--resume"]
    argv[argv.index("mlp-digits")] = "conv-digits"
    before = snapshot(out)
    user_error(capsys, argv, str(out / "model.safetensors"), "--model conv-digits", "stored model 'mlp-digits'")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("flag,value,needle", [
    ("--model", "no-such-model", "unknown model 'no-such-model'"),
    ("--dataset", "no-such-data", "unknown dataset 'no-such-data'"),
    ("--method", "no-such-method", "unknown method 'no-such-method'"),
])
def test_unknown_names(tmp_path, capsys, flag, value, needle):
    argv = ["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "o")]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    user_error(capsys, argv, needle)
    assert not (tmp_path / "o").exists()


def test_missing_dataset_root(tmp_path, capsys):
    root = tmp_path / "nonexistent"
    argv = ["train", "--model", "mlp-digits", "--dataset", "mnist", "--data-root", str(root),
            "--epochs", "1", "--out", str(tmp_path / "o"), "--no-progress"]
    user_error(capsys, argv, str(root), "mnist")
    assert not (tmp_path / "o").exists()


def test_eval_corrupt_checkpoints(run1, tmp_path, capsys):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(2048))
    user_error(capsys, ["eval", str(garbage)], str(garbage), "not a readable safetensors checkpoint")
    data = (run1 / "model.safetensors").read_bytes()
    trunc = tmp_path / "truncated.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    user_error(capsys, ["eval", str(trunc)], str(trunc))
    user_error(capsys, ["eval", str(tmp_path / "missing.safetensors")], "missing.safetensors", "no such checkpoint")


def test_eval_spec_weights_disagree(run1, tmp_path, capsys):
    src = run1 / "model.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    spec = json.loads(meta["spec"])
    spec["layers"][1]["out"] = 100                               # 128 -> 100 hidden units
    meta["spec"] = json.dumps(spec)
    edited = tmp_path / "edited.safetensors"
    save_file(load_file(str(src)), str(edited), metadata=meta)
    user_error(capsys, ["eval", str(edited)], str(edited), "spec and weights disagree")


def test_non_empty_out_needs_force(run1, tmp_path, capsys):
    out = tmp_path / "busy"
    shutil.copytree(run1, out)
    before = snapshot(out)
    user_error(capsys, ["train", *TINY, "--epochs", "1", "--out", str(out)], str(out), "not empty", "--force")
    assert snapshot(out) == before
    # --force with a typo must not cost the existing run either
    typo = ["train", *TINY, "--epochs", "1", "--out", str(out), "--force"]
    typo[typo.index("mlp-digits")] = "mlp-digitz"
    user_error(capsys, typo, "mlp-digitz")
    assert snapshot(out) == before
    # --force with valid arguments replaces it
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--force", "--method", "saf-f"]) == 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["method"] == "saf-f"
    assert len(metrics(out)) == 1


def test_nan_loss_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "nan"
    user_error(capsys, ["train", *TINY, "--epochs", "1", "--out", str(out), "--lr", "1e30"],
               "loss became nan", "lower --lr", "no checkpoint written")
    assert not out.exists()
    # an existing empty directory is kept, and stays empty
    out.mkdir()
    user_error(capsys, ["train", *TINY, "--epochs", "1", "--out", str(out), "--lr", "1e30"], "loss became nan")
    assert list(out.iterdir()) == []


def test_installed_entry_point(tmp_path):
    """The `saf` console script: a user error is one line on stderr, exit 2, no traceback."""
    exe = Path(sys.executable).with_name("saf")
    assert exe.exists(), exe
    env = {k: v for k, v in os.environ.items() if k != "SAF_DEBUG"}
    p = subprocess.run([str(exe), "train", "--model", "no-such-model", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "no-such-model" in p.stderr
