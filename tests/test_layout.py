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
LAVA_OK = ("deploy/lava/backend.py", "deploy/lava/graph.py", "deploy/lava_procs/", "deploy/lava/stock.py",
           "deploy/lava/stock_encode.py")


def _package_of(name: str) -> str:
    """The project package a dotted module name belongs to (saf.export.ir -> export), else its top name."""
    parts = name.split(".")
    return parts[1] if parts[0] == "saf" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set:
    """Top-level names imported by a module; saf.* names and relative imports are resolved to the project
    package they reach (a relative import climbing out of its package counts as the package it lands in)."""
    here = ("saf",) + path.relative_to(ROOT).with_suffix("").parts  # e.g. saf.deploy.lava.procs.lif
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods |= {_package_of(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = here[:len(here) - node.level]
                base = ".".join(anchor + ((node.module,) if node.module else ()))
            if base == "saf":  # `from saf import export`
                mods |= {a.name for a in node.names}
            elif base:
                mods.add(_package_of(base))
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
    code = ("import sys, saf.deploy.cli.train, saf.deploy.cli.export, saf.deploy.cli.run, saf.deploy.backends.registry, saf.deploy.verify.core, "
            "saf.deploy.backends.emulator, saf.deploy.backends.onnx_runner, saf.export.pipeline.snn; sys.exit(1 if any(m.split('.')[0] == 'lava' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_modules_stay_small():
    big = [f"{p.relative_to(ROOT)}: {n}" for p in list(_sources()) + sorted((ROOT / "tests").glob("*.py"))
           if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big
