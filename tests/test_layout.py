"""Project rules checked mechanically: imports flow train <- export <- deploy with hw_targets a
leaf; only deploy's Lava backend imports lava; no module grows past 600 lines."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"train": {"export", "deploy", "hw_targets"}, "hw_targets": {"train", "export", "deploy", "torch"},
             "export": {"deploy"}}
LAVA_OK = ("deploy/lava_backend.py", "deploy/lava_graph.py", "deploy/lava_procs/")


def _imports(path: Path) -> set:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods


def _sources():
    for pkg in ("train", "export", "hw_targets", "deploy"):
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_import_direction():
    bad = []
    for p in _sources():
        pkg = p.relative_to(ROOT).parts[0]
        hit = _imports(p) & FORBIDDEN.get(pkg, set())
        if hit:
            bad.append(f"{p.relative_to(ROOT)} imports {sorted(hit)}")
    assert not bad, bad


def test_only_the_lava_backend_imports_lava():
    bad = [str(p.relative_to(ROOT)) for p in _sources() if "lava" in _imports(p)
           and not str(p.relative_to(ROOT)).startswith(LAVA_OK)]
    assert not bad, bad
    code = ("import sys, train.cli, export.cli, deploy.cli, deploy.backends, deploy.verify, deploy.emulator, "
            "deploy.onnx_runner, export.pipeline; sys.exit(1 if any(m.split('.')[0] == 'lava' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_modules_stay_small():
    big = [f"{p.relative_to(ROOT)}: {n}" for p in list(_sources()) + sorted((ROOT / "tests").glob("*.py"))
           if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big
