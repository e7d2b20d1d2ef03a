"""On a Python without Lava, every command that needs it fails up front in one line (exit 2, nothing
written), instead of after every other backend has run. "No Lava" is made honestly in a child
process: a meta-path finder that refuses `lava` and `lava.*` before anything is imported (the
child checks that `import lava` really fails); the backend code is not mocked. The same commands
without the block succeed (the control), so the failure is the missing Lava and nothing else."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from saf.deploy.main import main

GOLDEN_CKPT = Path(__file__).parent / "golden" / "demo" / "model.safetensors"

CHILD = r"""
import sys

class NoLava:
    def find_spec(self, name, path=None, target=None):
        if name == "lava" or name.startswith("lava."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if sys.argv[1] == "block":
    sys.meta_path.insert(0, NoLava())
    try:
        import lava  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the block did not hold: lava imported")
from saf.deploy.main import main
sys.exit(main(sys.argv[2:]))
"""


def tree(root) -> dict:
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(Path(root).rglob("*"))}


def child(mode: str, *argv, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "SAF_DEBUG"}
    return subprocess.run([sys.executable, "-c", CHILD, mode, *argv], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("nolava") / "ws" / "bundle"
    assert main(["export", str(GOLDEN_CKPT), "--target", "loihi", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv", [
    ["verify", "{bundle}", "--limit", "4"],                       # verify's default backends include lava
    ["verify", "{bundle}", "--backends", "saf-int,lava", "--out", "{ws}/v"],
    ["run", "{bundle}", "--backend", "lava", "--limit", "2", "--raster", "{ws}/r.png"],
    ["demo", "--out", "{ws}/demo", "--epochs", "1"],
])
def test_without_lava_fails_up_front_in_one_line(bundle, argv):
    ws = bundle.parent
    argv = [a.format(bundle=bundle, ws=ws) for a in argv]
    before = tree(ws)
    p = child("block", *argv, cwd=ws)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "lava backend cannot run on this Python" in lines[0] and "No module named 'lava'" in lines[0]
    assert p.stdout == ""                                         # no backend ran, no training started
    assert tree(ws) == before                                     # nothing written


def test_control_the_same_verify_with_lava_passes(bundle, tmp_path):
    p = child("noblock", "verify", str(bundle), "--limit", "4", "--lava-limit", "2", "--out", str(tmp_path / "v"),
              "--no-progress")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "verify: PASS" in p.stdout and (tmp_path / "v" / "verify.json").is_file()
