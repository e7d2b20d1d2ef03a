"""core/outdir.py, the one helper every output directory goes through: what --force may replace
(a saf output recognised by its marker's content and holding nothing saf did not write), and the
staged swap (built beside the old one, swapped in on success, old state intact on any failure,
SIGINT/SIGTERM handled only after the swap itself). Each check is shown to fail on the fault it guards."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

import saf.core.outdir as od
from saf.deploy.cli.demo import DEMO_DIR, MARKER, MARKER_TEXT
from saf.export.bundle.store import BUNDLE_DIR
from saf.train.checkpoint import RUN_DIR, save_checkpoint
from saf.train.modules.network import SpikingNet
from saf.core.outdir import OutputError, Staged, check_target, make_dirs, remove_made, why_not_ours
from saf.train.spec import load_spec, with_neuron


def tree(root: Path) -> dict:
    """Every file and directory under root: relative path -> bytes (None for a directory)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(Path(root).rglob("*"))}


def saf_run(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(d / "model.safetensors", SpikingNet(with_neuron(load_spec("mlp-iris"))), {"method": "saf-e"})
    (d / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return d


def test_what_force_may_replace(tmp_path):
    run = saf_run(tmp_path / "run")
    assert why_not_ours(run, RUN_DIR) is None
    check_target(run, (RUN_DIR,), force=True)                      # a saf run: allowed
    check_target(tmp_path / "new", (RUN_DIR,), force=False)       # absent: allowed
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty", (RUN_DIR,), force=False)     # empty: nothing to lose
    with pytest.raises(OutputError, match="not empty .*--force"):
        check_target(run, (RUN_DIR,), force=False)
    # the user's own folder, however it looks
    thesis = tmp_path / "thesis"
    (thesis / "drafts").mkdir(parents=True)
    (thesis / "drafts" / "ch1.tex").write_text("x")
    with pytest.raises(OutputError, match="replaces only a saf training run.*nothing was changed"):
        check_target(thesis, (RUN_DIR,), force=True)
    # a marker with saf's name but not saf's content
    (thesis / "model.safetensors").write_bytes(b"not a checkpoint")
    assert why_not_ours(thesis, RUN_DIR) == "(no marker)"
    # a saf run the user added a file to: refused, naming the file
    (run / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="'notes.txt', which saf did not write"):
        check_target(run, (RUN_DIR,), force=True)
    (run / "notes.txt").unlink()
    (run / "curves.png").mkdir()                                  # a member name, but a directory
    assert why_not_ours(run, RUN_DIR) == "curves.png"
    (run / "curves.png").rmdir()
    (run / ".model.safetensors.abc123").write_bytes(b"")          # atomic_write's leftover: ours
    assert why_not_ours(run, RUN_DIR) is None
    # another kind of saf output is not a training run
    with pytest.raises(OutputError, match="saf bundle"):
        check_target(run, (BUNDLE_DIR,), force=True)
    # a file, a file in the way, a symlink
    (tmp_path / "f").write_text("x")
    for bad, needle in ((tmp_path / "f", "not a directory"), (tmp_path / "f" / "sub", "is not a directory")):
        with pytest.raises(OutputError, match=needle):
            check_target(bad, (RUN_DIR,), force=True)
    os.symlink(run, tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        check_target(tmp_path / "link", (RUN_DIR,), force=True)


def test_demo_output_is_checked_recursively(tmp_path):
    demo = tmp_path / "demo"
    saf_run(demo / "run")
    (demo / MARKER).write_text(MARKER_TEXT)
    assert why_not_ours(demo, DEMO_DIR) is None
    (demo / "run" / "mine.txt").write_text("x")
    assert why_not_ours(demo, DEMO_DIR) == "run/mine.txt"
    (demo / "run" / "mine.txt").unlink()
    (demo / MARKER).write_text("something else\n")
    assert why_not_ours(demo, DEMO_DIR) == "(no marker)"


def test_staged_replaces_only_on_success(tmp_path):
    out = saf_run(tmp_path / "run")
    before = tree(tmp_path)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with Staged(out, (RUN_DIR,), force=True) as tmp:
                assert tmp.parent == out.parent and tmp.name.startswith(".run.saf-tmp-")
                (tmp / "model.safetensors").write_bytes(b"new")
                raise exc
        assert tree(tmp_path) == before                          # old intact, nothing left beside it
    with Staged(out, (RUN_DIR,), force=True) as tmp:
        saf_run(tmp)
        (tmp / "metrics.jsonl").write_text('{"epoch": 2}\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 2}\n'


def test_staged_new_output_and_parents_removed_on_failure(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError):
        with Staged(out, (RUN_DIR,)) as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []                         # a/b created for it, removed again
    top = make_dirs(tmp_path / "x" / "y")
    assert top == tmp_path / "x" and make_dirs(tmp_path / "x" / "y") is None
    remove_made(top)
    assert list(tmp_path.iterdir()) == []


def test_rename_failure_puts_the_old_output_back(tmp_path, monkeypatch):
    out = saf_run(tmp_path / "run")
    before = tree(out)
    real = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:                                       # old moved aside, new not yet in
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(od.os, "rename", flaky)
    with pytest.raises(OSError, match="No space"):
        with Staged(out, (RUN_DIR,), force=True) as tmp:
            (tmp / "model.safetensors").write_bytes(b"new")
    assert len(calls) == 3                                        # aside, (failed) in, back
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _swap_with_sigterm_mid_way(tmp_path, monkeypatch):
    """Send SIGTERM (handler raises, as deploy/cli/main.py installs) between the swap's two renames."""
    out = saf_run(tmp_path / "run")
    real = os.rename

    def rename_then_signal(src, dst):
        real(src, dst)
        if Path(dst).name == "run" and ".saf-old-" in str(dst):
            os.kill(os.getpid(), signal.SIGTERM)

    def raise_terminated(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(od.os, "rename", rename_then_signal)
    old = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(KeyboardInterrupt):
            with Staged(out, (RUN_DIR,), force=True) as tmp:
                (tmp / "model.safetensors").write_bytes(b"new")
                (tmp / "metrics.jsonl").write_text("new")
    finally:
        signal.signal(signal.SIGTERM, old)
    return out


def test_a_signal_during_the_swap_waits_until_it_is_done(tmp_path, monkeypatch):
    out = _swap_with_sigterm_mid_way(tmp_path, monkeypatch)
    assert (out / "metrics.jsonl").read_text() == "new"           # the swap completed, then the signal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_fault_undeferred_signal_during_the_swap_is_caught_by_the_check(tmp_path, monkeypatch):
    """Without the deferral the same SIGTERM interrupts the swap half-way: the new output is not in
    place (--out is missing, or put back to the old one), which the test above would catch."""
    class NoDeferral:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(od, "signals_deferred", NoDeferral)
    out = _swap_with_sigterm_mid_way(tmp_path, monkeypatch)
    assert not (out / "metrics.jsonl").exists() or (out / "metrics.jsonl").read_text() != "new"


def test_export_and_verify_replace_their_own_outputs(tmp_path, capsys):
    """`export --force` over a saf bundle and a repeated `verify --out` over its own report replace
    them whole, leaving nothing beside them."""
    import json

    from saf.deploy.main import main

    ckpt = Path(__file__).parent / "golden" / "demo" / "model.safetensors"
    b = tmp_path / "b"
    assert main(["export", str(ckpt), "--target", "onnx", "--out", str(b)]) == 0
    assert main(["export", str(ckpt), "--target", "loihi", "--out", str(b), "--force"]) == 0
    assert json.loads((b / "manifest.json").read_text())["target"] == "loihi2"
    v = tmp_path / "v"
    for backends in ("saf-int,emulator", "saf-int,onnx"):
        assert main(["verify", str(b), "--backends", backends, "--limit", "3", "--out", str(v), "--report",
                     str(v / "report.md"), "--no-progress"]) == 0
    assert "onnx" in json.loads((v / "verify.json").read_text())["samples"]
    assert "emulator" not in json.loads((v / "verify.json").read_text())["samples"]
    assert sorted(p.name for p in v.iterdir()) == ["report.md", "report.rates.png", "summary.txt", "verify.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "v"]


def test_out_changed_while_writing_keeps_both(tmp_path):
    """A user's file lands in --out while the new output is being built: --out is not replaced (it is
    no longer only saf's), and the complete new output is kept in a visible sibling, named."""
    out = saf_run(tmp_path / "run")
    with pytest.raises(OutputError, match="the new output is complete and was kept in") as e:
        with Staged(out, (RUN_DIR,), force=True) as tmp:
            saf_run(tmp)
            (tmp / "metrics.jsonl").write_text("new")
            (out / "notes.txt").write_text("written during training")
    assert (out / "notes.txt").read_text() == "written during training" and (out / "metrics.jsonl").read_text() != "new"
    kept = Path(str(e.value).rsplit(" ", 1)[1])
    assert kept.parent.parent == tmp_path and (kept / "metrics.jsonl").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if ".saf-tmp-" in p.name]
