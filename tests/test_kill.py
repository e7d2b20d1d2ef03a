"""Killing `saf train ... --force` over an existing run with a real signal, mid-training, leaves the old
run exactly as it was and loadable. The new run is being written beside it when the signal arrives
(its first epoch's checkpoint exists and differs from the old one, so a swap would show)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saf.deploy.main import main
from saf.train.checkpoint import load_model

ARGS = ["--model", "mlp-digits", "--dataset", "digits", "--T", "2", "--device", "cpu", "--no-progress"]


def tree(root) -> dict:
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(Path(root).rglob("*"))}


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "template"
    assert main(["train", *ARGS, "--limit-train", "64", "--epochs", "1", "--out", str(out)]) == 0
    return out


def _start_and_signal(root: Path, old: Path, sig: int):
    """Start `saf train --force` over `old` in a fresh process; once its first new epoch is written
    in the temporary sibling, send `sig`. Returns (exit code, stderr, new checkpoint bytes)."""
    env = {k: v for k, v in os.environ.items() if k != "SAF_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "saf.deploy.main", "train", *ARGS, "--seed", "9", "--epochs", "500",
                          "--out", str(old), "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        new_ckpt = None
        while time.monotonic() < deadline and p.poll() is None and (old / "model.safetensors").exists():
            tmps = [d for d in root.iterdir() if d.name.startswith(f".{old.name}.saf-tmp-")]
            if tmps and (tmps[0] / "model.safetensors").exists():
                time.sleep(0.5)                                    # a little further into epoch 2
                new_ckpt = (tmps[0] / "model.safetensors").read_bytes()
                break
            time.sleep(0.1)
        assert (old / "model.safetensors").exists(), "the old run was removed while the new one trains"
        assert p.poll() is None and new_ckpt is not None, "the new run never started writing beside the old one"
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        return p.returncode, err, new_ckpt
    finally:
        if p.poll() is None:                                       # a failed assertion: no orphan left
            p.kill()
            p.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_force_keeps_the_old_run(old_run, tmp_path, sig):
    old = tmp_path / "run"
    shutil.copytree(old_run, old)
    before = tree(tmp_path)
    rc, err, new_ckpt = _start_and_signal(tmp_path, old, sig)
    assert new_ckpt != before["run/model.safetensors"]           # a swap would have changed the run
    assert rc == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig], err
    assert err.strip().splitlines()[-1].startswith("saf train: ") and "Traceback" not in err
    assert tree(tmp_path) == before                               # old run byte for byte, no sibling left
    net, spec, cfg = load_model(old)
    assert cfg["epochs_done"] == 1 and cfg["seed"] == 0


def test_sigkill_during_force_keeps_the_old_run(old_run, tmp_path):
    """SIGKILL cannot be caught: the hidden temporary sibling may stay, the old run is untouched."""
    old = tmp_path / "run"
    shutil.copytree(old_run, old)
    before = tree(old)
    rc, _, _ = _start_and_signal(tmp_path, old, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert tree(old) == before
    load_model(old)
    assert all(p.name == "run" or p.name.startswith(".run.saf-tmp-") for p in tmp_path.iterdir())
