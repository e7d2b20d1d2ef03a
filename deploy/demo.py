"""`saf demo` (what `make demo` runs): the whole pipeline on the embedded digits dataset, as the
same `saf` commands a user would type, each printed before it runs."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from saf.export.bundle import BundleError


def _saf(argv: list) -> int:
    from .main import main

    print("\n$ saf " + " ".join(argv), flush=True)
    return main(argv)


def run_demo(out: Path, epochs: int = 8, lava_limit: int = 50, force: bool = False) -> int:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise BundleError(f"{out}: exists and is not empty (use --force, or `make clean-demo`)")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    run, loihi, onnx = out / "run", out / "bundle-loihi", out / "bundle-onnx"
    steps = [
        ["train", "--model", "conv-digits", "--dataset", "digits", "--method", "saf-e", "--T", "6", "--lam", "0.5",
         "--epochs", str(epochs), "--out", str(run)],
        ["eval", str(run)],
        ["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(loihi)],
        ["export", str(run), "--target", "onnx", "--out", str(onnx)],
        ["info", str(loihi)],
        ["run", str(loihi), "--backend", "lava", "--limit", str(lava_limit), "--raster", str(out / "raster.png")],
        ["verify", str(loihi), "--backends", "saf-int,emulator,onnx,lava,saf-float", "--lava-limit",
         str(lava_limit), "--out", str(out / "verify"), "--report", str(out / "verify" / "report.md"),
         "--no-progress"],
    ]
    for argv in steps:
        rc = _saf(argv)
        if rc != 0:
            print(f"\ndemo: `saf {argv[0]}` failed with exit code {rc}")
            return rc
    print(f"\ndemo: done in {time.perf_counter() - t0:.0f} s; outputs in {out}/ (curves {run}/curves.png, "
          f"raster {out}/raster.png, report {out}/verify/report.md)")
    return 0
