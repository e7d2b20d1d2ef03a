"""saf-toolchain installs one namespace, `saf`: the generic names train/export/deploy/hw_targets must not
become importable modules of a user's environment. Checked on a wheel built from this checkout (what
`pip install .` installs) and on the development install the tests run in, both from a directory that
is not the repository (the repository root would put its folders on sys.path)."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "train", "export", "deploy", "hw_targets")
PROBE = """
import importlib, json, sys
out = {}
for name in %r:
    for mod in (name, "saf." + name):
        try:
            importlib.import_module(mod)
            out[mod] = True
        except ImportError:
            out[mod] = False
import saf
out["saf_file"] = saf.__file__
print(json.dumps(out))
""" % (PACKAGES,)


def _probe(cwd: Path, env: dict | None = None) -> dict:
    import json
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _package_dirs() -> set:
    """Every folder of the four packages that holds an __init__.py, as an installed module name."""
    names = {"saf"}
    for pkg in PACKAGES:
        for init in (ROOT / pkg).rglob("__init__.py"):
            names.add("saf." + ".".join(init.parent.relative_to(ROOT).parts))
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("saf_toolchain-*.whl")
    return whl


def test_wheel_holds_only_the_saf_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist == {"saf"}, sorted(tops)
    packaged = {"saf." + ".".join(Path(n).parent.parts[1:]) if len(Path(n).parts) > 2 else "saf"
                for n in names if n.endswith("/__init__.py")}
    assert packaged == _package_dirs(), "pyproject's package list and the folders disagree"
    # Lava finds ProcessModels beside their Process: the whole lava_procs folder must ship.
    procs = {p.name for p in (ROOT / "deploy" / "lava_procs").glob("*.py")}
    assert procs <= {Path(n).name for n in names if n.startswith("saf/deploy/lava_procs/")}
    eps = configparser.ConfigParser()
    eps.read_string(zipfile.ZipFile(wheel).read(f"{dist.pop()}/entry_points.txt").decode())
    assert eps["console_scripts"]["saf"] == "saf.deploy.main:main"
    assert eps["pytest11"]["saf_fidelity"] == "saf.deploy.verify.pytest_plugin"


def test_installed_wheel_imports_saf_names_only(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    got = _probe(work, env)
    assert Path(got.pop("saf_file")).is_relative_to(target), "probe imported another saf than the wheel's"
    assert got == {**{p: False for p in PACKAGES}, **{"saf." + p: True for p in PACKAGES}}


def test_development_install_imports_saf_names_only(tmp_path):
    got = _probe(tmp_path)
    got.pop("saf_file")
    assert got == {**{p: False for p in PACKAGES}, **{"saf." + p: True for p in PACKAGES}}


def test_entry_points_run_from_elsewhere(tmp_path):
    """The console script and `python -m saf.deploy.main` (what torchrun -m runs) work outside the repo."""
    exe = Path(sys.executable).with_name("saf")
    for cmd in ([str(exe), "--help"], [sys.executable, "-m", "saf.deploy.main", "train", "--help"]):
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "usage: saf" in r.stdout
