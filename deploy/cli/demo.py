"""`saf demo` (what `make demo` runs): the whole pipeline on the embedded digits dataset, as the
same `saf` commands a user would type, each printed before it runs.

The demo folder is built beside --out (a temporary sibling, core/outdir.py) with the commands
run inside it, and swapped in only when every step has succeeded: a failed or interrupted demo
leaves an earlier demo output as it was, and --force replaces only a folder that holds a demo's
marker file and nothing but what the demo writes."""
from __future__ import annotations

import os
import time
from pathlib import Path

from saf.export.bundle.store import BUNDLE_DIR
from saf.train.checkpoint import RUN_DIR
from saf.core.errors import SafError
from saf.core.outdir import OutputError, OutputKind, Staged, check_target

from saf.deploy.backends.registry import require_lava
from saf.deploy.verify.report_io import VERIFY_DIR
from saf.core.counts import check_count

MARKER = ".saf-demo"
MARKER_TEXT = "saf demo output: written by `saf demo`; `saf demo --force` may replace this folder\n"
RASTER = "raster.png"


def _is_marker(path: Path) -> bool:
    try:
        return Path(path).read_text() == MARKER_TEXT
    except (OSError, ValueError):
        return False


# A demo output folder: what `saf demo --force` may replace (core/outdir.py).
DEMO_DIR = OutputKind("saf demo output", MARKER, _is_marker, (MARKER, RASTER),
                      children=(("run", RUN_DIR), ("bundle-loihi", BUNDLE_DIR), ("bundle-onnx", BUNDLE_DIR),
                                ("verify", VERIFY_DIR)))


def _saf(argv: list) -> int:
    from saf.deploy.cli.main import main

    print("\n$ saf " + " ".join(argv), flush=True)
    return main(argv)


def _steps(epochs: int, lava_limit: int) -> list:
    return [
        ["train", "--model", "conv-digits", "--dataset", "digits", "--method", "saf-e", "--T", "6", "--lam", "0.5",
         "--epochs", str(epochs), "--out", "run"],
        ["eval", "run"],
        ["export", "run", "--target", "loihi", "--calibrate-data", "digits", "--out", "bundle-loihi"],
        ["export", "run", "--target", "onnx", "--out", "bundle-onnx"],
        ["info", "bundle-loihi"],
        ["run", "bundle-loihi", "--backend", "lava", "--limit", str(lava_limit), "--raster", RASTER],
        ["verify", "bundle-loihi", "--backends", "saf-int,emulator,onnx,lava,saf-float", "--lava-limit",
         str(lava_limit), "--out", "verify", "--report", "verify/report.md", "--no-progress"],
    ]


class _StepFailed(SafError):
    """A demo step's command failed (it printed its own error); the demo exits with its code."""

    def __init__(self, rc: int):
        super().__init__(f"a demo step exited with {rc}")
        self.rc = self.exit_code = rc


def run_demo(out: Path, epochs: int = 8, lava_limit: int = 50, force: bool = False) -> int:
    out = Path(out).absolute()
    check_count("--epochs", epochs, 1, OutputError)
    check_count("--lava-limit", lava_limit, 1, OutputError)
    check_target(out, (DEMO_DIR,), force)
    require_lava("saf demo")
    t0 = time.perf_counter()
    cwd = os.getcwd()
    try:
        with Staged(out, (DEMO_DIR,), force=force) as tmp:
            (tmp / MARKER).write_text(MARKER_TEXT)
            print(f"(the commands run in a new folder beside {out}, swapped in when all succeed)", flush=True)
            os.chdir(tmp)
            try:
                for argv in _steps(epochs, lava_limit):
                    rc = _saf(argv)
                    if rc != 0:
                        print(f"\ndemo: `saf {argv[0]}` failed with exit code {rc}; {out} is unchanged")
                        raise _StepFailed(rc)
            finally:
                os.chdir(cwd)
    except _StepFailed as e:
        return e.rc
    print(f"\ndemo: done in {time.perf_counter() - t0:.0f} s; outputs in {out}/ (curves {out}/run/curves.png, "
          f"raster {out}/{RASTER}, report {out}/verify/report.md)")
    return 0
