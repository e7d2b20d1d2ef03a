"""Shared test fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    """CLI tests assert one-line errors: SAF_DEBUG=1 in the caller's environment would add tracebacks."""
    monkeypatch.delenv("SAF_DEBUG", raising=False)


@pytest.fixture(scope="session")
def golden_demo_bundle(tmp_path_factory):
    """The pinned demo network (tests/golden/demo) exported for Loihi once per session, loaded."""
    from saf.deploy.backends.registry import Bundle
    from saf.deploy.main import main
    out = tmp_path_factory.mktemp("golden-demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    return Bundle.load(out)
