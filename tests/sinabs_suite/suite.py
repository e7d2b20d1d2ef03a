"""The Sinabs suite (`make test-sinabs`): runs in .venv-sinabs (Sinabs 3.1.3, nir 1.0.4; saf is not installed there:
saf pins nir 1.0.8 and pip refuses both in one environment, docs/nir.md). Sinabs writes its CNN's NIR file here, and
saf's environment (SAF_PYTHON, the Makefile's .venv) imports, deploys and verifies it (tests/saf_test_helpers/sinabs_check.py), as a
Sinabs user with two environments would. The file name is not test_*.py, so `make test` (pytest tests) never
collects it; `make test-sinabs` names it."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURE = ROOT / "tests" / "golden" / "sinabs-cnn"

import sinabs_cnn  # this folder is on the path: pytest.ini pythonpath


def _write(out: Path, spike_fn: str = "single") -> Path:
    sinabs_cnn.export(out, spike_fn)
    return out


def _saf_check(d: Path, work: Path, *extra: str) -> tuple:
    """tests/saf_test_helpers/sinabs_check.py in saf's environment: (exit code, its JSON)."""
    py = os.environ.get("SAF_PYTHON")
    assert py, "set SAF_PYTHON to the python of saf's environment (make test-sinabs sets it to .venv/bin/python)"
    p = subprocess.run([py, str(ROOT / "tests" / "saf_test_helpers" / "sinabs_check.py"), str(d / "cnn.nir"), str(d / "sinabs.npz"),
                        "--work", str(work), *extra], capture_output=True, text=True, cwd=ROOT)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, p.stdout[-2000:] + p.stderr[-2000:]
    return p.returncode, json.loads(lines[-1])


def test_sinabs_writes_the_committed_fixture(tmp_path):
    """Sinabs' to_nir today writes the graph tests/golden/sinabs-cnn holds (every node's type and parameters, the
    edges) and the same spikes, so the main suite's tests on that file test what Sinabs writes. (`make
    sinabs-fixture` rewrites the fixture after an intended change.)"""
    import nir

    d = _write(tmp_path / "fresh")
    new, old = nir.read(str(d / "cnn.nir")), nir.read(str(FIXTURE / "cnn.nir"))
    assert sorted(new.edges) == sorted(old.edges)
    assert sorted(new.nodes) == sorted(old.nodes)
    for name, n in new.nodes.items():
        o = old.nodes[name]
        assert type(n) is type(o), name
        for attr, v in vars(n).items():
            if attr in ("metadata", "input_type", "output_type"):
                continue
            assert np.array_equal(np.asarray(v), np.asarray(getattr(o, attr))), (name, attr)
    a, b = np.load(d / "sinabs.npz"), np.load(FIXTURE / "sinabs.npz")
    assert sorted(a.files) == sorted(b.files) == ["spikes0", "spikes1", "spikes2", "x", "y"]
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k


def test_a_file_sinabs_writes_now_imports_deploys_and_verifies_in_saf(tmp_path):
    """The fresh file through saf's CLI in saf's environment: float form and deployed (loihi) spikes equal Sinabs'
    in every layer, loihi and onnx bundles EXACT, saf verify PASS (saf-int, emulator, ONNX, lava-own)."""
    rc, r = _saf_check(_write(tmp_path / "fresh"), tmp_path / "work")
    assert r["float_mismatches"] == [0, 0, 0] and r["deployed_mismatches"] == [0, 0, 0], r
    assert rc == 0 and r["verify_pass"] and r["exact_loihi"] and r["exact_onnx"], r


def test_a_multispike_sinabs_net_fails_the_comparison(tmp_path):
    """Sinabs' default spike_fn, MultiSpike, fires floor(v / threshold) spikes in one step; its to_nir writes the
    same IF node, so the file cannot say it. The comparison sees Sinabs' multi-spikes differ from the file's net."""
    d = _write(tmp_path / "multi", "multi")
    spikes = np.load(d / "sinabs.npz")
    assert max(int(spikes[f"spikes{i}"].max()) for i in range(3)) > 1      # it did fire more than once per step
    rc, r = _saf_check(d, tmp_path / "work", "--float-only")
    assert rc == 1 and sum(r["float_mismatches"]) > 100, r
