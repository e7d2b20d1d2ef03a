"""Each bundle file is read once at load and hashed from the bytes then used (issue 22, item 7): the
weights are parsed, the ONNX model run and the float source loaded from the bytes that were checked,
so a file swapped on disk after the check changes nothing that runs."""
from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from saf.deploy.backends.registry import Bundle, run_backend
from saf.deploy.main import main
from saf.export.bundle.store import ONNX_FILE, SOURCE_FILE, WEIGHTS, load_graph

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    return out


def _count_opens(monkeypatch, directory: Path) -> Counter:
    """Every open() of a file of `directory` (builtins and io, so np.load and Path.read_bytes count)."""
    seen, real, real_path_open = Counter(), io.open, Path.open

    def note(file):
        p = Path(file) if isinstance(file, (str, Path)) else None
        if p is not None and p.parent.resolve() == directory.resolve():
            seen[p.name] += 1

    def counting(file, *a, **k):
        note(file)
        return real(file, *a, **k)

    def counting_path_open(self, *a, **k):            # Path.read_bytes / read_text go through Path.open
        note(self)
        return real_path_open(self, *a, **k)
    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)
    monkeypatch.setattr(Path, "open", counting_path_open)
    return seen


def test_every_file_is_read_once_per_load(demo, monkeypatch):
    """Old code: read_manifest hashed every file, load_graph hashed every file again and np.load read
    weights.npz a third time."""
    seen = _count_opens(monkeypatch, demo)
    b = Bundle.load(demo)
    assert set(seen) == {"manifest.json", WEIGHTS, ONNX_FILE, SOURCE_FILE} and set(seen.values()) == {1}, seen
    seen.clear()
    xq = np.zeros((2, *b.graph.input_shape), np.int64)
    run_backend("onnx", b, xq)
    run_backend("saf-float", b, xq)
    assert not seen, f"read again after load: {dict(seen)}"


def test_files_swapped_after_the_check_do_not_run(demo, tmp_path):
    """The bytes hashed are the bytes used: replacing model.onnx and source.safetensors on disk after
    loading changes nothing (old code re-read both from disk: a swapped file ran unchecked)."""
    import shutil
    copy = tmp_path / "b"
    shutil.copytree(demo, copy)
    b = Bundle.load(copy)
    from saf.deploy.verify.inputs import load_inputs
    xq = load_inputs(b, "digits", None, 12)[0]
    before = {n: run_backend(n, b, xq) for n in ("onnx", "saf-float")}
    (copy / ONNX_FILE).write_bytes(b"not an onnx model")
    (copy / SOURCE_FILE).write_bytes(b"not a checkpoint")
    for n, r in before.items():
        after = run_backend(n, b, xq)
        assert np.array_equal(after.readout, r.readout), n


def test_weights_are_parsed_from_the_hashed_bytes(demo, monkeypatch):
    """A reader returning other bytes on a second read cannot change the graph: there is no second read.
    Old code parsed weights.npz from a fresh read after hashing it (here: a zeroed copy on read 2+)."""
    g0 = load_graph(demo)
    zeroed = io.BytesIO()
    np.savez(zeroed, **{k: np.zeros_like(v) for k, v in np.load(demo / WEIGHTS).items()})
    reads, real_open, real_rb = Counter(), io.open, Path.read_bytes

    def swapping_open(file, mode="r", *a, **k):
        if isinstance(file, (str, Path)) and Path(file).name == WEIGHTS and "b" in mode:
            reads["w"] += 1
            if reads["w"] > 1:
                return io.BytesIO(zeroed.getvalue())
        return real_open(file, mode, *a, **k)

    def swapping_read_bytes(self):
        if self.name == WEIGHTS:
            reads["w"] += 1
            if reads["w"] > 1:
                return zeroed.getvalue()
        return real_rb(self)
    monkeypatch.setattr(builtins, "open", swapping_open)
    monkeypatch.setattr(io, "open", swapping_open)
    monkeypatch.setattr(Path, "read_bytes", swapping_read_bytes)
    g = load_graph(demo)
    assert reads["w"] == 1
    assert all(np.array_equal(a.weight, c.weight) for a, c in zip(g.layers, g0.layers))
    assert any(np.abs(l.weight).sum() > 0 for l in g.layers)


def test_export_reads_the_checkpoint_once(tmp_path, monkeypatch):
    """The checkpoint is hashed (manifest meta), loaded and copied into the bundle from one read (old
    code: load, then hash, then copy: three reads, any of which could see another file)."""
    import hashlib
    import shutil
    src = tmp_path / "ckpt"
    src.mkdir()
    shutil.copy(GOLDEN / "model.safetensors", src / "model.safetensors")
    from saf.export.pipeline.snn import export_checkpoint
    seen = _count_opens(monkeypatch, src)
    export_checkpoint(src / "model.safetensors", "loihi", tmp_path / "b")
    assert seen == {"model.safetensors": 1}, seen     # (the CLI first peeks at the header: FP or not)
    monkeypatch.undo()
    b = Bundle.load(tmp_path / "b")
    data = (src / "model.safetensors").read_bytes()
    assert b.files[SOURCE_FILE] == data
    assert b.manifest["meta"]["checkpoint_sha256"] == hashlib.sha256(data).hexdigest()
