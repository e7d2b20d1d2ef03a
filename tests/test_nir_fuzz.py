"""Fuzz of `saf import` (issue 29 item 4): every damaged NIR file is refused in one line naming it, exit 2,
nothing written; or it imports (exit 0) into a run directory that loads. Never an internal error.

Six valid files written by the real `nir` package (tests/saf_test_helpers/nir_mutants.py: hand-built graphs, a snnTorch RLeaky net
through snnTorch's export_to_nir, an FP network and an IDE run as saf writes them) are mutated, seeded, into a
fixed set of about 600 files: bytes flipped, the file truncated, NaN/inf/negative/huge/large/zero/fractional/
string/complex/wrong-shape/empty values written with h5py into every dataset of every node (three kinds each, in
turn), nodes deleted or retyped, edges dropped, pointed at or from missing nodes, closing cycles, empty graphs,
the edges dataset malformed, and the graph metadata `saf` given wrong types and values."""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import nir  # noqa: E402

from saf.deploy.main import main  # noqa: E402

from saf_test_helpers.nir_mutants import (HUGE, SEED, base_files, edit, edits, fp_graph, hand_built, mutant_files,
                         set_meta, write_dataset)

EXPORTS = 3                                  # imported mutants exported for Loihi


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _loads(run: Path) -> None:
    from saf.train.checkpoint import load_model
    from saf.train.methods.fp.checkpoint import is_fp_checkpoint
    if is_fp_checkpoint(run):
        from saf.train.methods.fp.checkpoint import load_fp_checkpoint
        load_fp_checkpoint(run / "model.safetensors")
    else:
        load_model(run)


def _import(src: Path, out: Path, capsys, force=False) -> tuple:
    capsys.readouterr()
    rc = main(["import", str(src), "--out", str(out)] + (["--force"] if force else []))
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("nirfuzz")
    (root / "bases").mkdir()
    (root / "mutants").mkdir()
    bases = base_files(root / "bases")
    return bases, mutant_files(bases, root / "mutants")


def test_every_base_file_imports(corpus, tmp_path, capsys):
    """The mutated files differ from importable ones (each base imports, exit 0, and the run loads)."""
    bases, _ = corpus
    for name, path in bases.items():
        rc, err = _import(path, tmp_path / name, capsys)
        assert rc == 0, err
        _loads(tmp_path / name)


def _one(src: Path, work: Path, prior: Path, prior_tree: dict, force: bool, capsys) -> tuple:
    """("refused" | "imported", None) when `saf import src` behaved, else (what, the problem)."""
    out = work / "run"
    if force:
        shutil.copytree(prior, out)
    rc, err = _import(src, out, capsys, force)
    if rc not in (0, 2):
        return "internal", f"exit {rc}: {err.strip()}"
    if "Traceback" in err:
        return "traceback", err
    if rc == 2:
        if len(err.strip().splitlines()) != 1 or not err.startswith("saf import: error: ") or src.name not in err:
            return "not one line naming the file", err
        if (_tree(out) != prior_tree) if force else out.exists():
            return "wrote at --out", err
        if sorted(p.name for p in work.iterdir()) != (["run"] if force else []):
            return "left files beside --out", sorted(p.name for p in work.iterdir())
        return "refused", None
    try:
        _loads(out)
    except Exception as e:  # noqa: BLE001 - any failure to load the imported run is the defect reported
        return "imported run does not load", f"{type(e).__name__}: {e}"
    return "imported", None


def _export(run: Path, out: Path, capsys) -> tuple:
    capsys.readouterr()
    rc = main(["export", str(run), "--target", "loihi", "--calibrate-limit", "40", "--out", str(out)])
    return rc, capsys.readouterr().err


def test_mutated_nir_files_are_refused_in_one_line_or_import(corpus, tmp_path, capsys):
    """Each file: exit 2 with one line naming it, nothing at --out (a missing --out stays missing, a saf run
    there with --force stays byte for byte), no temporary left beside it; or exit 0 and the run loads. A seeded
    sample of the imported runs exports for Loihi or is refused in one line. No other outcome, ever."""
    bases, mutants = corpus
    assert len(mutants) >= 300
    prior = tmp_path / "prior"                       # a run saf wrote: --force over it must keep it on refusal
    assert _import(bases["conv-if-avgpool"], prior, capsys)[0] == 0
    prior_tree = _tree(prior)
    seen, outcome, problems, imported = Counter(), Counter(), [], []
    for i, (cat, src) in enumerate(mutants):
        seen[cat] += 1
        work = tmp_path / f"w{i}"
        work.mkdir()
        what, problem = _one(src, work, prior, prior_tree, i % 7 == 0, capsys)
        outcome[(cat, what)] += 1
        if problem is not None:
            problems.append(f"{what}: {src.name}: {problem}")
        if what == "imported" and cat != "graph metadata":
            imported.append(work / "run")
        else:
            shutil.rmtree(work)
    report = "\n".join(f"{cat:24s} {n:4d} files: " + ", ".join(f"{outcome[(c, w)]} {w}" for c, w in sorted(outcome)
                                                               if c == cat) for cat, n in sorted(seen.items()))
    with capsys.disabled():
        print("\n" + report)
    assert problems == [], "\n".join(problems)
    assert all(n >= 10 for n in seen.values()), report
    assert sum(n for (c, w), n in outcome.items() if w == "refused") >= 300, report
    for j, run in enumerate(random.Random(SEED).sample(imported, EXPORTS)):
        rc, err = _export(run, tmp_path / f"bundle{j}", capsys)
        assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err), (run, rc, err)


# --- the defects the fuzz found, one file each (each was an internal error, a run that does not load, or a
# message naming a flag nobody gave, before the reader validated what it reads) -------------------------------

def _meta(**kw) -> str:
    return json.dumps(dict({"format": "saf-nir-1", "dt": 1e-4, "T": 6, "reset": "subtract", "compare": "ge"}, **kw))


DEFECTS = {
    # name: (base graph, edit of the written file, words the one line must hold)
    "string bias": ("conv-lif-sumpool", lambda f: write_dataset(f, "node/nodes/conv/bias", np.full(4, "1x", object)),
                    ["'conv'", "bias", "not real numbers"]),
    "infinite groups": ("conv-if-avgpool", lambda f: write_dataset(f, "node/nodes/conv/groups", np.inf),
                        ["'conv'", "groups", "NaN or inf"]),
    "complex weight": ("conv-if-avgpool", lambda f: write_dataset(f, "node/nodes/fc/weight",
                                                                   f["node/nodes/fc/weight"][()] + 1j), ["'fc'", "complex"]),
    "empty end_dim": ("conv-lif-sumpool", lambda f: write_dataset(f, "node/nodes/flat/end_dim", np.zeros(0, int)),
                      ["'flat'", "end_dim", "empty"]),
    "tau = -inf read as beta = 1": ("conv-lif-sumpool", lambda f: edits(f, {f"node/nodes/{n}/{a}": v for n, shape in (
        ("lif", (4, 8, 8)), ("lif2", 16), ("li", 10)) for a, v in (("tau", np.full(shape, -np.inf)), ("r", np.ones(shape)))}),
        ["tau holds NaN or inf"]),
    "huge bias": ("conv-if-avgpool", lambda f: write_dataset(f, "node/nodes/fc/bias", np.full(16, HUGE)),
                  ["'fc'", "bias", "float32"]),
    "folded weight overflows float32": ("conv-lif-sumpool", lambda f: write_dataset(
        f, "node/nodes/lif2/v_threshold", np.full(16, 1e-40)), ["blocks.1.weight", "float32"]),
    "metadata T a list": ("cuba-scale-meta", lambda f: set_meta(f, _meta(T=[6])), ["graph metadata 'saf' key 'T'", "[6]"]),
    "metadata reset a list": ("cuba-scale-meta", lambda f: set_meta(f, _meta(reset=["zero"])), ["'saf' key 'reset'"]),
    "metadata compare a list": ("cuba-scale-meta", lambda f: set_meta(f, _meta(compare=["gt"])), ["'saf' key 'compare'"]),
    "metadata dt infinite": ("cuba-scale-meta", lambda f: set_meta(f, _meta(dt=float("inf"))), ["'saf' key 'dt'", "inf", "finite"]),
    "metadata dsr a list": ("cuba-scale-meta", lambda f: set_meta(f, _meta(dsr=[1])), ["'dsr'", "alpha"]),
    "FP metadata config a list": ("saf-fp", lambda f: set_meta(f, json.dumps(dict(json.loads(
        f["node/metadata/saf"][()]), config=[1]))), ["FP graph", "config [1]"]),
}


@pytest.mark.parametrize("case", list(DEFECTS))
def test_found_defect_is_refused_in_one_line(case, tmp_path, capsys):
    base, change, words = DEFECTS[case]
    good = tmp_path / "good.nir"
    nir.write(str(good), fp_graph() if base == "saf-fp" else hand_built()[base])
    src = tmp_path / "bad.nir"
    edit(good, src, change)
    rc, err = _import(src, tmp_path / "run", capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(src) in err, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "run").exists()
