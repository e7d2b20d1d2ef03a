"""`saf demo` (what `make demo` runs) end to end in a fresh process: train -> eval -> export loihi
and onnx -> Lava run -> verify. A short budget here; the README states the full demo's numbers.
Also guards the in-process order that once broke Lava's import (tqdm fixing the mp start method)."""
from __future__ import annotations

import json
import subprocess
import sys


def test_demo_pipeline_end_to_end(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "saf.deploy.main", "demo", "--out", str(out), "--epochs", "3",
                        "--lava-limit", "8"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "verify: PASS" in p.stdout and "identical predictions: 100.00%" in p.stdout
    rep = json.loads((out / "verify" / "verify.json").read_text())
    assert rep["certificate"]["exact"] and rep["samples"]["lava"] == 8 and rep["samples"]["onnx"] == 360
    assert all(pair["spike_mismatches"] == 0 for pair in rep["pairs"])
    for f in ("run/curves.png", "raster.png", "verify/report.md", "bundle-onnx/model.onnx"):
        assert (out / f).stat().st_size > 0
