"""Authenticated bundles: every file and the manifest's own content are hashed; a missing, extra or
changed file or manifest field is refused on load by every command (info, run, verify, bench infer,
the pytest fixture) with one line naming the file, exit 2. Each refusal is shown to be a real check:
the untouched bundle loads, and each tampering changes exactly one thing."""
from __future__ import annotations

import hashlib

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from saf.deploy.backends.registry import Bundle
from saf.deploy.main import main
from saf.deploy.verify.pytest_plugin import check_fidelity
from saf.export.bundle.store import BundleError, load_graph, read_manifest, write_bundle
from saf.export.bundle.auth import MANIFEST_HASH_KEY, manifest_digest
from saf.export.synthetic import random_graph

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("auth") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    return out


def _copy(bundle, tmp_path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


def _edit_manifest(b: Path, fn, reseal: bool = False) -> None:
    m = json.loads((b / "manifest.json").read_text())
    fn(m)
    if reseal:                                    # a hand-crafted manifest with a recomputed digest
        m[MANIFEST_HASH_KEY] = manifest_digest(m)
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


COMMANDS = [["info", "{b}"], ["run", "{b}", "--limit", "2"],
            ["verify", "{b}", "--backends", "saf-int,emulator", "--limit", "2", "--out", "{tmp}/v"],
            ["bench", "infer", "{b}", "--backends", "emulator", "--limit", "2", "--repeats", "1"]]


def _refused_everywhere(capsys, b: Path, tmp_path, names: str) -> None:
    for argv in COMMANDS:
        rc = main([a.format(b=b, tmp=tmp_path) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and names in err, (argv, err)
    with pytest.raises(BundleError, match=names.replace("/", ".")):
        check_fidelity(b, limit=2)
    assert not (tmp_path / "v").exists()


def test_untouched_bundle_loads_everywhere(bundle, tmp_path, capsys):
    """The control: the same commands succeed on the bundle as exported."""
    b = _copy(bundle, tmp_path)
    for argv in COMMANDS:
        assert main([a.format(b=b, tmp=tmp_path) for a in argv]) == 0, argv
    capsys.readouterr()
    assert check_fidelity(b, limit=2).ok
    m = read_manifest(b)
    assert set(m["files"]) == {"weights.npz", "model.onnx", "source.safetensors"}
    assert m[MANIFEST_HASH_KEY] == manifest_digest(m)


SEMANTIC_EDITS = {
    "threshold": lambda m: m["layers"][0].__setitem__("threshold", m["layers"][0]["threshold"] + 1),
    "T": lambda m: m.__setitem__("T", 4),
    "decay": lambda m: m.__setitem__("decay", 1024),
    "lam": lambda m: m.__setitem__("lam", 0.75),
    "input_scale": lambda m: m.__setitem__("input_scale", m["input_scale"] * 2),
    "input_bits": lambda m: m.__setitem__("input_bits", 8),
    "input_shape": lambda m: m.__setitem__("input_shape", [1, 64, 1]),
    "out_shape": lambda m: m["layers"][2].__setitem__("out_shape", [64]),
    "frac_bits": lambda m: m["layers"][1].__setitem__("frac_bits", 7),
    "certificate": lambda m: m["certificate"].__setitem__("exact", False),
    "files-key-deleted": lambda m: m.pop("files"),
    "extra-field": lambda m: m.__setitem__("note", "hand edit"),
}


@pytest.mark.parametrize("edit", sorted(SEMANTIC_EDITS))
def test_manifest_field_edit_is_refused_by_every_command(bundle, tmp_path, capsys, edit):
    b = _copy(bundle, tmp_path)
    before = json.loads((b / "manifest.json").read_text())
    _edit_manifest(b, SEMANTIC_EDITS[edit])
    assert json.loads((b / "manifest.json").read_text()) != before        # the edit really changed it
    _refused_everywhere(capsys, b, tmp_path, "manifest.json")


def test_replaced_weights_with_updated_hash_is_refused(bundle, tmp_path, capsys):
    b = _copy(bundle, tmp_path)
    with np.load(b / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["layer0_weight"][0, 0, 1, 1] -= 2
    np.savez(b / "weights.npz", **arrays)
    rc = main(["info", str(b)])
    assert rc == 2 and "weights.npz: sha256 does not match" in capsys.readouterr().err
    _edit_manifest(b, lambda m: m["files"].__setitem__("weights.npz", hashlib.sha256((b / "weights.npz").read_bytes()).hexdigest()))
    _refused_everywhere(capsys, b, tmp_path, "manifest.json: content does not match")


@pytest.mark.parametrize("how,names", [("extra", "notes.txt: not listed"),
                                       ("missing", "model.onnx: listed in the manifest but missing"),
                                       ("changed", "model.onnx: sha256 does not match"),
                                       ("old", "missing key 'manifest_sha256'")])
def test_missing_extra_changed_file_or_old_bundle_is_refused(bundle, tmp_path, capsys, how, names):
    b = _copy(bundle, tmp_path)
    if how == "extra":
        (b / "notes.txt").write_text("mine")
    elif how == "missing":
        (b / "model.onnx").unlink()
    elif how == "changed":
        with open(b / "model.onnx", "ab") as f:
            f.write(b"\0")
    else:
        _edit_manifest(b, lambda m: m.pop(MANIFEST_HASH_KEY))
    _refused_everywhere(capsys, b, tmp_path, names)


@pytest.mark.parametrize("edit,msg", [
    (lambda m: m.pop("T"), "missing key 'T'"),
    (lambda m: m["layers"][0].pop("threshold"), "missing key layers[0].'threshold'"),
    (lambda m: m["layers"][1].__setitem__("threshold", "big"), "layers[1].'threshold' must be an integer"),
    (lambda m: m.__setitem__("input_signed", 1), "'input_signed' must be a boolean"),
    (lambda m: m.__setitem__("T", 0), "key 'T' must be >= 1"),
    (lambda m: m["files"].__setitem__("../x", "0" * 64), "must name a file inside the bundle"),
])
def test_schema_errors_name_manifest_and_key(bundle, tmp_path, capsys, edit, msg):
    """A manifest whose digest was recomputed after the edit gets past authentication: the schema
    still refuses it with the key, never a KeyError."""
    b = _copy(bundle, tmp_path)
    _edit_manifest(b, edit, reseal=True)
    rc = main(["info", str(b)])
    err = capsys.readouterr().err
    assert rc == 2 and "manifest.json" in err and msg in err and err.count("\n") == 1, err
    with pytest.raises(BundleError, match="manifest.json"):
        load_graph(b)


def test_onnx_fingerprint_mismatch_is_a_bundle_error(tmp_path, capsys):
    """An ONNX model built from another graph, every hash consistent: refused when run, one line."""
    from saf.export.onnx_model import save_onnx_model

    g, other = random_graph("dense", T=4, lam=0.5, seed=0), random_graph("dense", T=4, lam=0.5, seed=1)
    out = write_bundle(g, tmp_path / "syn", writers={"model.onnx": lambda p: save_onnx_model(other, p)})
    Bundle.load(out)                                      # authentic: the files are what was written
    np.save(tmp_path / "x.npy", np.zeros((2, *g.input_shape), dtype=np.int64))
    rc = main(["verify", str(out), "--backends", "emulator,onnx", "--inputs", str(tmp_path / "x.npy"),
               "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert rc == 2 and "model.onnx: built from a different graph" in err and err.count("\n") == 1, err
    good = write_bundle(g, tmp_path / "ok", writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    assert main(["verify", str(good), "--backends", "emulator,onnx", "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "v")]) == 0
