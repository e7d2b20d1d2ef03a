"""`saf train`: nothing lost, nothing silently changed.

--resume continues with the run's stored configuration (and its stored model spec) and refuses a
flag that disagrees; --force replaces only a saf run and only once the new run completes; a NaN or
inf stops training naming the epoch and keeps the last good checkpoint. In-process through the real
dispatcher (deploy.main.main); the kill test with real signals is tests/test_kill.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import saf.train.run.trainer as trainer_mod
from saf.deploy.main import main
from saf.train.checkpoint import load_model
from saf_test_helpers.cli import user_error

torch.set_num_threads(1)

BASE = ["--dataset", "digits", "--limit-train", "128", "--device", "cpu", "--no-progress"]
# a run started away from every default: resume must bring all of it back
STARTED = ["--model", "mlp-digits", "--method", "bptt", "--lam", "0.25", "--T", "3", "--lr", "0.05",
           "--theta", "0.75", "--batch-size", "32", "--optimizer", "adam", "--surrogate", "rect", "--alpha", "0.5",
           "--seed", "3", "--momentum", "0.5", "--weight-decay", "0.001", "--mse-weight", "0.1"]



def tree(root) -> dict:
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(Path(root).rglob("*"))}


def config(out) -> dict:
    with safe_open(str(Path(out) / "model.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["config"])


def same_weights(a, b) -> bool:
    wa, wb = load_file(str(Path(a) / "model.safetensors")), load_file(str(Path(b) / "model.safetensors"))
    return sorted(wa) == sorted(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)




@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """One epoch of the off-default run, and the same run trained for two epochs uninterrupted."""
    root = tmp_path_factory.mktemp("resume")
    assert main(["train", *STARTED, *BASE, "--epochs", "1", "--out", str(root / "one")]) == 0
    assert main(["train", *STARTED, *BASE, "--epochs", "2", "--out", str(root / "two")]) == 0
    return root / "one", root / "two"


def test_resume_restores_the_stored_configuration(started, tmp_path, capsys):
    one, two = started
    out = tmp_path / "r"
    shutil.copytree(one, out)
    # the README's command: no model, method or hyper-parameter given
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    cfg, ref = config(out), config(two)
    assert cfg["method"] == "bptt" and cfg["lam"] == 0.25 and cfg["T"] == 3 and cfg["lr"] == 0.05
    assert {k: v for k, v in cfg.items()} == ref                  # every field, epochs_done included
    assert same_weights(out, two)                                 # and it trained as the uninterrupted run
    # explicit flags that agree with the stored run are fine, and --device / --data-root may change
    shutil.rmtree(out)
    shutil.copytree(one, out)
    assert main(["train", *STARTED, *BASE, "--out", str(out), "--resume", "--epochs", "2", "--device", "auto",
                 "--data-root", str(tmp_path)]) == 0
    assert same_weights(out, two)


def test_fault_without_restoring_the_run_differs(started, tmp_path):
    """What the test above guards against: resuming with the command line's defaults instead of the
    stored configuration (the old behaviour) trains other weights, so same_weights can fail."""
    from saf.train.data import load_dataset
    from saf.train.run.trainer import TrainConfig, Trainer

    one, two = started
    out = tmp_path / "d"
    shutil.copytree(one, out)
    defaults = TrainConfig(model="mlp-digits", optimizer="adam", limit_train=128, device="cpu", epochs=2)
    Trainer(defaults, out, load_dataset("digits"), progress=False, resume=True, log=lambda *a: None).fit()
    assert config(out)["method"] == "saf-e" and not same_weights(out, two)


@pytest.mark.parametrize("flag,value", [
    ("--method", "saf-e"), ("--lam", "0.5"), ("--T", "6"), ("--lr", "0.1"), ("--theta", "1.0"),
    ("--batch-size", "64"), ("--optimizer", "sgd"), ("--surrogate", "sigmoid"), ("--alpha", "4.0"),
    ("--seed", "0"), ("--momentum", "0.9"), ("--weight-decay", "0.0"), ("--mse-weight", "0.05"),
    ("--model", "conv-digits"), ("--dataset", "iris"), ("--limit-train", "64"),
])
def test_resume_refuses_a_conflicting_flag(started, tmp_path, capsys, flag, value):
    out = tmp_path / "r"
    shutil.copytree(started[0], out)
    before = tree(out)
    line = user_error(capsys, ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", flag, value],
                      f"{flag} {value} conflicts with the run's stored", str(out / "model.safetensors"))
    assert "--epochs" in line
    assert tree(out) == before


def test_resume_refusals(started, tmp_path, capsys):
    out = tmp_path / "r"
    shutil.copytree(started[0], out)
    before = tree(out)
    user_error(capsys, ["train", "--out", str(out), "--resume", "--no-progress"], "--epochs 1", "trained 1 epochs")
    user_error(capsys, ["train", "--out", str(out), "--resume", "--force", "--epochs", "3"], "--resume", "--force")
    user_error(capsys, ["train", "--out", str(out), "--resume", "--epochs", "0"], "--epochs must be an integer >= 1")
    assert tree(out) == before


def test_resume_uses_the_stored_spec_not_the_edited_file(tmp_path, capsys):
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"input_shape": [1, 8, 8], "num_classes": 10,
                                "layers": [{"type": "flatten"}, {"type": "linear", "out": 24}]}))
    out = tmp_path / "r"
    assert main(["train", "--model", str(spec), *BASE, "--T", "2", "--epochs", "1", "--out", str(out)]) == 0
    spec.write_text(json.dumps({"input_shape": [1, 8, 8], "num_classes": 10,
                                "layers": [{"type": "flatten"}, {"type": "linear", "out": 7}]}))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    net, stored, cfg = load_model(out)
    assert stored["layers"][1]["out"] == 24 and cfg["epochs_done"] == 2
    spec.unlink()                                                  # nor does it need the file any more
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]) == 0


# ------------------------------------------------------------------------------ non-finite loss

def _blow_up_at(monkeypatch, epoch_index: int):
    """From epoch `epoch_index` (0-based) on, train with lr 1e30: a real overflow to NaN/inf."""
    real = trainer_mod.Trainer.train_epoch

    def train_epoch(self, epoch):
        if epoch >= epoch_index:
            for g in self.opt.param_groups:
                g["lr"] = 1e30
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", train_epoch)


def test_nan_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "nan"
    _blow_up_at(monkeypatch, 1)
    line = user_error(capsys, ["train", "--model", "mlp-digits", *BASE, "--epochs", "3", "--out", str(out)],
                      "at epoch 2", "last good checkpoint (epoch 1) kept in")
    assert "nan" in line or "inf" in line
    net, _, cfg = load_model(out)                                  # loadable, finite (load_model checks)
    assert cfg["epochs_done"] == 1
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert torch.load(out / "resume.pt", weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0     # and it resumes
    assert config(out)["epochs_done"] == 3


def test_nan_under_force_leaves_the_old_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "old"
    assert main(["train", "--model", "mlp-digits", *BASE, "--epochs", "1", "--out", str(out)]) == 0
    before = tree(tmp_path)
    _blow_up_at(monkeypatch, 1)
    user_error(capsys, ["train", "--model", "mlp-digits", *BASE, "--epochs", "3", "--seed", "5", "--out", str(out),
                        "--force"], "at epoch 2", f"the previous run in {out} is unchanged")
    assert tree(tmp_path) == before                                # and no temporary sibling


def test_nan_weights_are_never_saved(tmp_path, capsys, monkeypatch):
    """Weights that became non-finite in an epoch whose losses were finite are caught before saving."""
    out = tmp_path / "w"
    real = trainer_mod.Trainer.train_epoch

    def poisoned(self, epoch):
        m = real(self, epoch)
        if epoch == 1:
            with torch.no_grad():
                next(self.net.parameters()).view(-1)[0] = float("inf")
        return m

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", poisoned)
    user_error(capsys, ["train", "--model", "mlp-digits", *BASE, "--epochs", "3", "--out", str(out)],
               "weights became NaN or inf at epoch 2", "last good checkpoint (epoch 1) kept in")
    assert load_model(out)[2]["epochs_done"] == 1


def test_interrupted_resume_stays_at_its_last_epoch(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert main(["train", "--model", "mlp-digits", *BASE, "--epochs", "1", "--out", str(out)]) == 0
    real = trainer_mod.Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", interrupted)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--no-progress"]) == 130
    assert load_model(out)[2]["epochs_done"] == 2 and torch.load(out / "resume.pt", weights_only=True)["epoch"] == 2
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0    # the stored 4 epochs
    assert config(out)["epochs_done"] == 4 and config(out)["epochs"] == 4


# ------------------------------------------------------------------------------ --force

def test_force_replaces_a_run_only_when_the_new_one_completes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp-digits", *BASE, "--epochs", "1", "--out", str(out)]) == 0
    before = tree(tmp_path)
    real = trainer_mod.Trainer.train_epoch
    seen = []

    def interrupted(self, epoch):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", interrupted)
    argv = ["train", "--model", "mlp-digits", *BASE, "--epochs", "2", "--seed", "7", "--out", str(out), "--force"]
    assert main(argv) == 130
    assert seen[1][0].startswith(".run.saf-tmp-") and seen[1][1] == "run"   # the new run was beside it
    assert tree(tmp_path) == before                                # old run intact, sibling gone
    monkeypatch.undo()
    assert main(argv) == 0
    assert config(out)["seed"] == 7 and config(out)["epochs_done"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_force_refuses_what_saf_did_not_write(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    (thesis / "draft").mkdir(parents=True)
    (thesis / "draft" / "chapter1.tex").write_text("years of work")
    run = tmp_path / "run"
    assert main(["train", "--model", "mlp-digits", *BASE, "--epochs", "1", "--out", str(run)]) == 0
    (run / "notes.txt").write_text("my notes")
    before = tree(tmp_path)
    argv = ["train", "--model", "mlp-iris", "--dataset", "iris", "--epochs", "1", "--no-progress", "--force"]
    user_error(capsys, [*argv, "--out", str(thesis)], str(thesis), "replaces only a saf training run",
               "it holds no model.safetensors written by saf")
    user_error(capsys, [*argv, "--out", str(run)], str(run), "'notes.txt', which saf did not write")
    assert tree(tmp_path) == before


def test_a_spec_files_own_neuron_and_T_are_used_not_overridden(tmp_path, capsys):
    spec = tmp_path / "leaky.json"
    spec.write_text(json.dumps({"input_shape": [1, 8, 8], "num_classes": 10, "neuron": {"lam": 0.25, "theta": 2.0},
                                "T": 3, "layers": [{"type": "flatten"}, {"type": "linear", "out": 16}]}))
    out = tmp_path / "r"
    argv = ["train", "--model", str(spec), *BASE, "--epochs", "1", "--out", str(out)]
    for flag, value in (("--lam", "0.5"), ("--theta", "1.0"), ("--T", "6")):
        user_error(capsys, [*argv, flag, value], f"{flag} {value} conflicts with", str(spec))
    assert not out.exists()
    assert main([*argv, "--lam", "0.25"]) == 0                    # agreeing is fine
    _, stored, cfg = load_model(out)
    assert (cfg["lam"], cfg["theta"], cfg["T"]) == (0.25, 2.0, 3)
    assert stored["neuron"] == {"lam": 0.25, "theta": 2.0} and stored["T"] == 3
