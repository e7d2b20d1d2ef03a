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

    # Everything the demo wrote is recognised as a demo output (so `saf demo --force` can replace it)...
    from saf.deploy.cli.demo import DEMO_DIR
    from saf.core.outdir import why_not_ours
    assert why_not_ours(out, DEMO_DIR) is None
    # ...and a --force demo that fails part-way leaves it exactly as it was, with nothing beside it.
    before = {str(q.relative_to(tmp_path)): (None if q.is_dir() else q.read_bytes()) for q in tmp_path.rglob("*")}
    p = subprocess.run([sys.executable, "-c", FAIL_AT_EXPORT, str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"{out} is unchanged" in p.stdout and "$ saf export" in p.stdout
    after = {str(q.relative_to(tmp_path)): (None if q.is_dir() else q.read_bytes()) for q in tmp_path.rglob("*")}
    assert after == before


# `saf demo --force` over the finished demo, with its first export given an unknown target: the real
# train and eval steps run (in the temporary sibling), then the export fails with exit 2.
FAIL_AT_EXPORT = r"""
import sys
import saf.deploy.cli.demo as demo
real = demo._steps
demo._steps = lambda e, l: [s if s[0] != "export" else s[:s.index("--target") + 1] + ["tpu"] + s[s.index("--target") + 2:]
                            for s in real(e, l)]
from saf.deploy.main import main
sys.exit(main(["demo", "--out", sys.argv[1], "--force", "--epochs", "1", "--lava-limit", "2"]))
"""
