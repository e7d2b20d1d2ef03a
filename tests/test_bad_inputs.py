"""The bad-input battery: every subcommand, every kind of input a user gets wrong (model spec files,
checkpoints, bundles, dataset files, numeric flags, output paths that are files, directories,
missing or unwritable). Each case must give exit code 2, exactly one line on stderr that names the
file or flag, no traceback, and leave every file and directory as it was: nothing written, nothing
deleted (the shared run/bundle and the case's own folder are compared byte for byte; the command
runs with the case folder as its working directory, so a stray relative write would show too)."""
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

from saf.deploy.main import main

torch.set_num_threads(1)

TINY = ["--model", "mlp-digits", "--dataset", "digits", "--limit-train", "64", "--T", "2", "--device", "cpu",
        "--no-progress"]
CONV = {"input_shape": [1, 8, 8], "num_classes": 10,
        "layers": [{"type": "conv", "out": 4, "kernel": 3, "stride": 1, "padding": 1},
                   {"type": "avgpool", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "out": 16}],
        "feedback": []}



@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A real run and a real bundle, shared read-only by every case (checked unchanged after each)."""
    root = tmp_path_factory.mktemp("battery")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--target", "loihi", "--out", str(root / "bundle")]) == 0
    return root


def tree(*roots) -> dict:
    out = {}
    for r in roots:
        for p in sorted(Path(r).rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_mode, None if p.is_dir() else p.read_bytes(), st.st_mtime_ns)
    return out


# ------------------------------------------------------------------------ case set-up helpers

def spec_file(mutate):
    def setup(case: Path, ws: Path):
        s = json.loads(json.dumps(CONV))
        text = mutate(s)
        (case / "s.json").write_text(text if isinstance(text, str) else json.dumps(s))
    return setup


def write(name: str, data: bytes = b"x"):
    def setup(case: Path, ws: Path):
        p = case / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return setup


def mkdir(name: str):
    def setup(case: Path, ws: Path):
        (case / name).mkdir(parents=True)
    return setup


def users_folder(name: str = "mine"):
    def setup(case: Path, ws: Path):
        (case / name / "thesis").mkdir(parents=True)
        (case / name / "thesis" / "draft.tex").write_text("years of work")
    return setup


def copy_of(what: str, extra: str = None):
    """A copy of the shared run or bundle in the case folder, with the user's file added."""
    def setup(case: Path, ws: Path):
        shutil.copytree(ws / what, case / what)
        if extra:
            (case / what / extra).write_text("the user's")
    return setup


def ckpt_with_spec(mutate):
    def setup(case: Path, ws: Path):
        src = ws / "run" / "model.safetensors"
        with safe_open(str(src), framework="pt") as f:
            meta = dict(f.metadata())
        spec = json.loads(meta["spec"])
        mutate(spec)
        meta["spec"] = json.dumps(spec)
        save_file(load_file(str(src)), str(case / "m.safetensors"), metadata=meta)
    return setup


def idx_garbage(case: Path, ws: Path):
    for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (case / "mnist").mkdir(exist_ok=True)
        (case / "mnist" / n).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)


def cifar_garbage(case: Path, ws: Path):
    (case / "c").mkdir()
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (case / "c" / n).write_bytes(b"\x80\x04garbage")


def none(case: Path, ws: Path):
    pass


def _pad(s):
    s["layers"][0]["padding"] = -1


# (id, argv template, set-up, needles that the one stderr line must contain)
S = "{case}/s.json"
CASES = [
    # ---- model spec files (saf train --model FILE)
    ("spec-stride-0", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"][0].update(stride=0)), [S, "'stride'"]),
    ("spec-pool-kernel-0", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"][1].update(kernel=0)), [S, "avgpool", "'kernel'"]),
    ("spec-layer-not-object", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"].append(7)), [S, "layer 4"]),
    ("spec-out-abc", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"][0].update(out="abc")), [S, "'out' must be an integer"]),
    ("spec-negative-padding", ["train", "--model", S, "--out", "{case}/o"], spec_file(_pad), [S, "'padding'"]),
    ("spec-negative-input", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s.update(input_shape=[1, -8, 8])), [S, "input_shape"]),
    ("spec-float-kernel", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"][0].update(kernel=2.5)), [S, "'kernel'"]),
    ("spec-unknown-key", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"][0].update(kernal=3)), [S, "'kernal'"]),
    ("spec-not-json", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: "{not json"), [S, "not valid JSON"]),
    ("spec-a-list", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: "[1, 2]"), [S, "JSON object"]),
    ("spec-missing", ["train", "--model", "{case}/nope.json", "--out", "{case}/o"], none, ["{case}/nope.json", "no such spec file"]),
    ("spec-is-a-directory", ["train", "--model", "{case}/d.json", "--out", "{case}/o"], mkdir("d.json"), ["{case}/d.json"]),
    ("spec-shapes-do-not-compose", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s["layers"].insert(0, {"type": "flatten"})), [S, "layer 1 (conv)", "[C, H, W]"]),
    ("spec-feedback-out-of-range", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s.update(feedback=[{"src": 5, "dst": 0}])), [S, "feedback 0"]),
    ("spec-neuron-not-number", ["train", "--model", S, "--out", "{case}/o"], spec_file(lambda s: s.update(neuron={"lam": "half"})), [S, "'lam'"]),
    ("spec-input-vs-dataset", ["train", "--model", "mlp-iris", "--dataset", "digits", "--out", "{case}/o"], none, ["mlp-iris", "[4]", "[1, 8, 8]"]),
    # ---- numeric and named flags (saf train)
    *[(f"train{flag}={val}", ["train", *TINY, flag, val, "--out", "{case}/o"], none, [flag])
      for flag, val in [("--batch-size", "0"), ("--batch-size", "-5"), ("--epochs", "0"), ("--T", "0"),
                        ("--lam", "1.5"), ("--lam", "nan"), ("--theta", "-1"), ("--lr", "0"), ("--lr", "inf"),
                        ("--momentum", "1"), ("--mse-weight", "2"), ("--alpha", "0"), ("--limit-train", "0"),
                        ("--seed", "-1"), ("--T", "abc"), ("--device", "tpu"), ("--method", "sgd"),
                        ("--optimizer", "rmsprop")]],
    # ---- output paths (saf train)
    ("train-out-is-a-file", ["train", *TINY, "--out", "{case}/f"], write("f"), ["--out {case}/f", "not a directory"]),
    ("train-out-under-a-file", ["train", *TINY, "--out", "{case}/f/run"], write("f"), ["{case}/f", "not a directory"]),
    ("train-out-users-folder", ["train", *TINY, "--out", "{case}/mine"], users_folder(), ["{case}/mine", "not empty"]),
    ("train-force-users-folder", ["train", *TINY, "--out", "{case}/mine", "--force"], users_folder(), ["{case}/mine", "replaces only a saf training run"]),
    ("train-force-run-plus-user-file", ["train", *TINY, "--out", "{case}/run", "--force"], copy_of("run", "notes.txt"), ["{case}/run", "'notes.txt'"]),
    ("train-force-over-a-bundle", ["train", *TINY, "--out", "{case}/bundle", "--force"], copy_of("bundle"), ["{case}/bundle", "saf training run"]),
    ("train-resume-nothing", ["train", "--out", "{case}/mine", "--resume"], users_folder(), ["{case}/mine", "nothing to resume"]),
    ("train-resume-conflict", ["train", "--out", "{case}/run", "--resume", "--epochs", "3", "--lr", "0.5"], copy_of("run"), ["--lr 0.5", "stored lr 0.1"]),
    ("train-resume-and-force", ["train", "--out", "{case}/run", "--resume", "--force"], copy_of("run"), ["--resume", "--force"]),
    ("train-resume-not-longer", ["train", "--out", "{case}/run", "--resume", "--epochs", "1"], copy_of("run"), ["--epochs 1", "trained 1 epochs"]),
    # ---- dataset files
    ("data-root-missing", ["train", *TINY, "--dataset", "mnist", "--data-root", "{case}/none", "--out", "{case}/o"], none, ["{case}/none"]),
    ("data-idx-garbage", ["train", *TINY, "--dataset", "mnist", "--data-root", "{case}/mnist", "--out", "{case}/o"], idx_garbage, ["{case}/mnist/"]),
    ("data-root-is-a-file", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{case}/f", "--out", "{case}/o"], write("f"), ["{case}/f", "not a directory"]),
    ("data-cifar-not-a-pickle", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{case}/c", "--out", "{case}/o"], cifar_garbage, ["{case}/c/data_batch_1"]),
    ("data-unknown", ["train", *TINY, "--dataset", "imagenet", "--out", "{case}/o"], none, ["'imagenet'"]),
    # ---- checkpoints (saf eval / export)
    ("eval-garbage", ["eval", "{case}/g.safetensors"], write("g.safetensors", os.urandom(512)), ["{case}/g.safetensors"]),
    ("eval-missing", ["eval", "{case}/none.safetensors"], none, ["{case}/none.safetensors"]),
    ("eval-dir-without-checkpoint", ["eval", "{case}/mine"], users_folder(), ["{case}/mine/model.safetensors"]),
    ("eval-spec-out-0", ["eval", "{case}/m.safetensors"], ckpt_with_spec(lambda s: s["layers"][1].update(out=0)), ["{case}/m.safetensors", "'out'"]),
    ("eval-data-other-shape", ["eval", "{ws}/run", "--data", "iris"], none, ["--data iris", "[4]", "[1, 8, 8]"]),
    ("eval-T-0", ["eval", "{ws}/run", "--T", "0"], none, ["--T"]),
    ("export-missing", ["export", "{case}/none.safetensors", "--target", "onnx", "--out", "{case}/b"], none, ["{case}/none.safetensors"]),
    ("export-input-scale-0", ["export", "{ws}/run", "--target", "loihi", "--input-scale", "0", "--out", "{case}/b"], none, ["--input-scale", "got 0"]),
    ("export-input-scale-negative", ["export", "{ws}/run", "--target", "loihi", "--input-scale", "-2", "--out", "{case}/b"], none, ["--input-scale"]),
    ("export-calibrate-limit-0", ["export", "{ws}/run", "--target", "loihi", "--calibrate-data", "digits", "--calibrate-limit", "0", "--out", "{case}/b"], none, ["--calibrate-limit"]),
    ("export-calibrate-limit-alone", ["export", "{ws}/run", "--target", "loihi", "--calibrate-limit", "5", "--out", "{case}/b"], none, ["--calibrate-limit", "--calibrate-data"]),
    ("export-input-bits-range", ["export", "{ws}/run", "--target", "loihi", "--input-scale", "4", "--input-bits", "30", "--out", "{case}/b"], none, ["--input-bits"]),
    ("export-input-bits-ignored", ["export", "{ws}/run", "--target", "loihi", "--input-bits", "4", "--out", "{case}/b"], none, ["--input-bits", "--input-scale"]),
    ("export-sum-pool-choice", ["export", "{ws}/run", "--target", "loihi", "--sum-pool", "yes", "--out", "{case}/b"], none, ["--sum-pool"]),
    ("export-T-0", ["export", "{ws}/run", "--target", "loihi", "--T", "0", "--out", "{case}/b"], none, ["--T"]),
    ("export-target", ["export", "{ws}/run", "--target", "tpu", "--out", "{case}/b"], none, ["'tpu'"]),
    ("export-calibration-data-garbage", ["export", "{ws}/run", "--target", "loihi", "--calibrate-data", "mnist", "--data-root", "{case}/mnist", "--out", "{case}/b"], idx_garbage, ["{case}/mnist/"]),
    ("export-out-is-a-file", ["export", "{ws}/run", "--target", "onnx", "--out", "{case}/f"], write("f"), ["--out {case}/f"]),
    ("export-out-existing-bundle", ["export", "{ws}/run", "--target", "onnx", "--out", "{case}/bundle"], copy_of("bundle"), ["{case}/bundle", "not empty", "--force"]),
    ("export-force-users-folder", ["export", "{ws}/run", "--target", "onnx", "--out", "{case}/mine", "--force"], users_folder(), ["{case}/mine", "replaces only a saf bundle"]),
    ("export-force-bundle-plus-user-file", ["export", "{ws}/run", "--target", "onnx", "--out", "{case}/bundle", "--force"], copy_of("bundle", "notes.md"), ["'notes.md'"]),
    ("export-force-over-the-run", ["export", "{ws}/run", "--target", "onnx", "--out", "{case}/run", "--force"], copy_of("run"), ["{case}/run", "saf bundle"]),
    # ---- bundles (info / run / verify)
    ("info-not-a-bundle", ["info", "{ws}/run"], none, ["{ws}/run/manifest.json"]),
    ("run-missing-bundle", ["run", "{case}/nope"], none, ["{case}/nope"]),
    ("run-limit-0", ["run", "{ws}/bundle", "--limit", "0"], none, ["--limit"]),
    ("run-data-other-shape", ["run", "{ws}/bundle", "--data", "iris"], none, ["iris", "[4]"]),
    ("run-raster-is-a-directory", ["run", "{ws}/bundle", "--limit", "2", "--raster", "{case}/mine"], users_folder(), ["--raster {case}/mine", "directory"]),
    ("run-raster-sample-out-of-range", ["run", "{ws}/bundle", "--limit", "2", "--raster", "{case}/r.png", "--sample", "5"], none, ["--sample 5"]),
    ("verify-out-is-a-file", ["verify", "{ws}/bundle", "--backends", "saf-int,emulator", "--out", "{case}/f"], write("f"), ["--out {case}/f"]),
    ("verify-out-users-folder", ["verify", "{ws}/bundle", "--backends", "saf-int,emulator", "--out", "{case}/mine"], users_folder(), ["{case}/mine", "saf verify report"]),
    ("verify-report-is-a-directory", ["verify", "{ws}/bundle", "--backends", "saf-int,emulator", "--out", "{case}/v", "--report", "{case}/mine"], users_folder(), ["--report {case}/mine"]),
    ("verify-mismatch-bound", ["verify", "{ws}/bundle", "--backends", "saf-int,emulator", "--mismatch-bound", "2"], none, ["--mismatch-bound"]),
    ("verify-unknown-backend", ["verify", "{ws}/bundle", "--backends", "saf-int,gpu"], none, ["--backends", "gpu"]),
    # ---- demo
    ("demo-force-users-folder", ["demo", "--out", "{case}/mine", "--force"], users_folder(), ["{case}/mine", "saf demo output"]),
    ("demo-out-not-empty", ["demo", "--out", "{case}/mine"], users_folder(), ["{case}/mine", "not empty"]),
    ("demo-out-is-a-file", ["demo", "--out", "{case}/f"], write("f"), ["{case}/f"]),
    ("demo-epochs-0", ["demo", "--out", "{case}/d", "--epochs", "0"], none, ["--epochs"]),
    ("demo-lava-limit-0", ["demo", "--out", "{case}/d", "--lava-limit", "0"], none, ["--lava-limit"]),
    # ---- bench
    ("bench-infer-limit-0", ["bench", "infer", "{ws}/bundle", "--limit", "0"], none, ["--limit"]),
    ("bench-train-out-is-a-directory", ["bench", "train", "--small", "--out", "{case}/mine"], users_folder(), ["--out {case}/mine"]),
]


def test_the_battery_is_large():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def check_bad_input(ws: Path, tmp_path: Path, capsys, monkeypatch, argv, setup, needles) -> None:
    case = tmp_path / "case"
    case.mkdir()
    setup(case, ws)
    fill = {"case": str(case), "ws": str(ws)}
    argv = [a.format(**fill) for a in argv]
    monkeypatch.chdir(case)
    before = tree(ws, tmp_path)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for n in needles:
        assert n.format(**fill) in lines[0], (n, lines[0])
    assert tree(ws, tmp_path) == before, "something was written or deleted"


@pytest.mark.parametrize("name,argv,setup,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ws, tmp_path, capsys, monkeypatch, name, argv, setup, needles):
    check_bad_input(ws, tmp_path, capsys, monkeypatch, argv, setup, needles)


# The battery's checks fail on the faults they are there for (each injected into a real command).

def _fault(monkeypatch, effect):
    import saf.deploy.cli.train as tcli
    real = tcli.plan_run

    def faulty(a):
        effect(Path(a.out))
        return real(a)

    monkeypatch.setattr(tcli, "plan_run", faulty)


@pytest.mark.parametrize("effect,needle", [
    (lambda out: out.parent.joinpath("stray").write_text("x"), "written or deleted"),           # writes
    (lambda out: (out.parent / "stray").mkdir() or (out.parent / "stray").rmdir(), "written or deleted"),
    (lambda out: (out / "thesis" / "draft.tex").unlink(), "written or deleted"),               # deletes
    (lambda out: 1 / 0, "internal error"),                                                      # exit 1
    (lambda out: print("line one\nline two", file=sys.stderr), "line two"),                    # two lines
])
def test_fault_the_battery_catches(ws, tmp_path, capsys, monkeypatch, effect, needle):
    _fault(monkeypatch, effect)
    argv = ["train", *TINY, "--out", "{case}/mine", "--force"]
    with pytest.raises(AssertionError, match=needle):
        check_bad_input(ws, tmp_path, capsys, monkeypatch, argv, users_folder(), ["replaces only"])


def test_any_saferror_from_a_command_is_one_line_exit_2(capsys, monkeypatch):
    """main catches the one base class (core/errors.py), so an error class no command listed before
    (GridError, raised deep in the library) is still one line and exit 2, not an internal error."""
    import saf.deploy.cli.train as tcli
    from saf.train.grid.record import GridError

    def refuse(a):
        raise GridError("grid.json: first line\nsecond line")

    monkeypatch.setattr(tcli, "plan_run", refuse)
    capsys.readouterr()
    rc = main(["train", *TINY, "--out", "unused"])
    err = capsys.readouterr().err
    assert rc == 2 and err == "saf train: error: grid.json: first line second line\n", (rc, err)


# ------------------------------------------------------------------------ unwritable places
# Root writes anywhere: as root the command runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (dropped
# from the bounding set before exec), so the kernel's own permission check applies. No mock.

UNWRITABLE = [
    ("train", ["train", *TINY, "--out", "{ro}/run"]),
    ("train-force-over-a-run-there", ["train", *TINY, "--out", "{ro}/oldrun", "--force"]),
    ("export", ["export", "{ws}/run", "--target", "onnx", "--out", "{ro}/bundle"]),
    ("verify", ["verify", "{ws}/bundle", "--backends", "saf-int,emulator", "--out", "{ro}/v"]),
    ("demo", ["demo", "--out", "{ro}/demo"]),
    ("run-raster", ["run", "{ws}/bundle", "--limit", "2", "--raster", "{ro}/r.png"]),
]


@pytest.fixture(scope="module")
def ro_ws(ws, tmp_path_factory):
    """The shared run and bundle beside a read-only folder (holding a file of the user's)."""
    root = tmp_path_factory.mktemp("readonly")
    for name in ("run", "bundle"):
        shutil.copytree(ws / name, root / name)
    (root / "ro").mkdir()
    (root / "ro" / "keep.txt").write_text("x")
    shutil.copytree(ws / "run", root / "ro" / "oldrun")
    os.chmod(root / "ro", 0o555)
    yield root
    os.chmod(root / "ro", 0o755)


def _without_root_override():
    if os.geteuid() == 0:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):                                   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:            # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_the_read_only_folder_is_really_read_only(ro_ws):
    p = subprocess.run([sys.executable, "-c", f"open({str(ro_ws / 'ro' / 'x')!r}, 'w')"], capture_output=True,
                       text=True, preexec_fn=_without_root_override, timeout=60)
    assert p.returncode != 0 and "PermissionError" in p.stderr
    assert sorted(x.name for x in (ro_ws / "ro").iterdir()) == ["keep.txt", "oldrun"]


@pytest.mark.parametrize("name,argv", UNWRITABLE, ids=[u[0] for u in UNWRITABLE])
def test_unwritable_output(ro_ws, name, argv):
    argv = [a.format(ws=ro_ws, ro=ro_ws / "ro") for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "SAF_DEBUG"}
    before = tree(ro_ws)
    p = subprocess.run([sys.executable, "-m", "saf.deploy.main", *argv], capture_output=True, text=True, env=env,
                       cwd=ro_ws, preexec_fn=_without_root_override, timeout=300)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    assert str(ro_ws / "ro") in lines[0] and "not writable" in lines[0], lines[0]
    assert tree(ro_ws) == before
