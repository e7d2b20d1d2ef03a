"""Runs keep their best: the validation split (stratified, seeded, disjoint from the training samples
and from the test set), val_acc per epoch, best.safetensors (highest val_acc, earlier epoch on ties)
beside model.safetensors, kept through a worse epoch and through --resume, and `saf eval` / `saf export`
using it by default (saying so) with `--checkpoint last` for the last."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from saf_test_helpers.cli import user_error

import saf.train.run.trainer as trainer_mod
from saf.deploy.main import main
from saf.train.checkpoint import BEST, CHECKPOINT, RUN_DIR, best_of, choose_checkpoint
from saf.train.data import Dataset
from saf.train.data.validation import hold_out, split_indices
from saf.core.files import file_sha256

torch.set_num_threads(1)
TINY = ["--model", "mlp-digits", "--dataset", "digits", "--limit-train", "200", "--batch-size", "50",
        "--T", "3", "--device", "cpu", "--no-progress"]



def metrics(out):
    return [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def config_of(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["config"])


# ------------------------------------------------------------------------------- the split

def test_split_is_stratified_seeded_and_disjoint():
    y = np.repeat(np.arange(3), 40)                                   # iris' 120 training labels
    tr, va = split_indices(y, 0.1, seed=0)
    assert len(va) == 12 and np.bincount(y[va]).tolist() == [4, 4, 4]  # stratified
    assert not set(tr) & set(va) and sorted(set(tr) | set(va)) == list(range(120))
    tr2, va2 = split_indices(y, 0.1, seed=0)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)        # seeded: the same split again
    assert not np.array_equal(va, split_indices(y, 0.1, seed=1)[1])   # another seed, another split
    assert len(split_indices(y, 0.0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match="--val-fraction"):
        split_indices(y, 0.9, seed=0)


def test_hold_out_takes_from_train_only():
    n = 600                                   # each training sample carries its own index as its value
    d = Dataset("idx", torch.arange(n, dtype=torch.float32).reshape(n, 1), torch.arange(n) % 10,
                torch.full((40, 1), -1.0), torch.arange(40) % 10, 10, (1,), None)
    rest, xv, yv = hold_out(d, 0.1, seed=3, limit_train=500)
    v, t = set(xv[:, 0].long().tolist()), set(rest.x_train[:, 0].long().tolist())
    assert len(v) == len(yv) == 50 and not v & t and v | t == set(range(500))     # from the first 500 only
    assert torch.equal(yv, xv[:, 0].long() % 10)                                    # labels travel with samples
    assert torch.equal(rest.x_test, d.x_test) and torch.equal(rest.y_test, d.y_test)


def test_best_of_prefers_the_earlier_epoch_on_ties():
    ms = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.8}, {"epoch": 3, "val_acc": 0.8},
          {"epoch": 4, "val_acc": 0.7}]
    assert best_of(ms)["epoch"] == 2
    assert best_of([{"epoch": 1}]) is None


def test_run_dir_kind_knows_best():
    assert BEST in RUN_DIR.members


# ------------------------------------------------------------------------ a worse epoch, resume

@pytest.fixture(scope="module")
def worse_run(tmp_path_factory):
    """Two good epochs, then --resume to 3 where epoch 3 is made worse on purpose (weights scaled
    randomly after its training step): best.safetensors must stay the best of epochs 1-2."""
    out = tmp_path_factory.mktemp("best") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    before = (out / BEST).read_bytes()
    mp = pytest.MonkeyPatch()
    real = trainer_mod.Trainer.train_epoch

    def worse(self, epoch):
        m = real(self, epoch)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():                 # every weight moved to a random place: near chance
            for p in self.net.parameters():
                p.copy_(p.flatten()[torch.randperm(p.numel(), generator=g)].reshape(p.shape))
        return m

    mp.setattr(trainer_mod.Trainer, "train_epoch", worse)
    try:
        assert main(["train", *TINY, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    finally:
        mp.undo()
    return out, before


def test_best_survives_a_worse_epoch_and_resume(worse_run):
    out, before = worse_run
    ms = metrics(out)
    assert [m["epoch"] for m in ms] == [1, 2, 3] and all("val_acc" in m for m in ms)
    best = best_of(ms)
    assert best["epoch"] in (1, 2) and ms[2]["val_acc"] < best["val_acc"]     # the injected worse epoch
    assert (out / BEST).read_bytes() == before                                  # kept, not replaced
    cfg = config_of(out / BEST)
    assert cfg["best_epoch"] == best["epoch"] and cfg["best_val_acc"] == best["val_acc"]
    assert config_of(out / CHECKPOINT)["epochs_done"] == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_DIR.members)


def test_eval_uses_best_by_default_and_says_so(worse_run, capsys):
    out, _ = worse_run
    ms = metrics(out)
    best = best_of(ms)
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)
    assert f"using best checkpoint (epoch {best['epoch']}, val acc {best['val_acc']:.4f})" in cap.err
    assert r["saf_accuracy"] == pytest.approx(best["test_acc"], abs=1e-9)
    assert main(["eval", str(out), "--checkpoint", "last"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("using last checkpoint (epoch 3)")
    assert f"SAF form accuracy  {ms[2]['test_acc']:.4f}" in text


@pytest.mark.parametrize("which,name", [(None, BEST), ("last", CHECKPOINT)])
def test_export_uses_best_by_default(worse_run, tmp_path, capsys, which, name):
    out, _ = worse_run
    bundle = tmp_path / "bundle"
    argv = ["export", str(out), "--target", "onnx", "--out", str(bundle)]
    capsys.readouterr()
    assert main(argv + (["--checkpoint", which] if which else [])) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("using best checkpoint" if which is None else "using last checkpoint")
    manifest = json.loads((bundle / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert file_sha256(out / name) in text                   # the bundle records the file it came from
    other = CHECKPOINT if name == BEST else BEST
    assert file_sha256(out / other) not in text


def test_force_replaces_a_run_with_best_and_refuses_foreign_files(worse_run, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    assert (out / BEST).is_file()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--force", "--seed", "1"]) == 0
    (out / "notes.txt").write_text("mine")
    user_error(capsys, ["train", *TINY, "--epochs", "1", "--out", str(out), "--force"], "notes.txt")


# ------------------------------------------------------------------------ no validation split

def test_val_fraction_zero_is_the_old_behaviour(tmp_path, capsys):
    out = tmp_path / "r0"
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--val-fraction", "0"]) == 0
    text = capsys.readouterr().out
    assert "warning: --val-fraction 0: no validation split" in text
    assert not (out / BEST).exists() and "val_acc" not in metrics(out)[0]
    assert config_of(out / CHECKPOINT)["val_fraction"] == 0
    path, line = choose_checkpoint(out)
    assert path == out / CHECKPOINT and "no best.safetensors" in line


@pytest.mark.parametrize("value", ["0.9", "-0.1", "nan"])
def test_bad_val_fraction(tmp_path, capsys, value):
    user_error(capsys, ["train", *TINY, "--out", str(tmp_path / "x"), "--val-fraction", value], "--val-fraction")
    assert not (tmp_path / "x").exists()


def test_a_run_from_before_resumes_without_a_split(worse_run, tmp_path):
    """A checkpoint whose stored config has no val_fraction (written before validation splits) resumes
    with 0, as it trained, not with today's default: --resume never changes the training data."""
    from safetensors.torch import load_file, save_file

    from saf.train.run.config import resumed_config

    out, _ = worse_run
    old = tmp_path / "old"
    old.mkdir()
    with safe_open(str(out / CHECKPOINT), framework="pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    del cfg["val_fraction"]
    meta["config"] = json.dumps(cfg)
    save_file(load_file(str(out / CHECKPOINT)), str(old / CHECKPOINT), metadata=meta)
    (old / "resume.pt").write_bytes((out / "resume.pt").read_bytes())
    assert resumed_config(old, {"epochs": 4})[0].val_fraction == 0.0
    assert resumed_config(out, {"epochs": 4})[0].val_fraction == 0.1
