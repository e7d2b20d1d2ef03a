"""Shared test fixtures.

SAF_TEST_DETERMINISTIC=1 runs the suite with torch's deterministic algorithms on (the issue-29 check that no
test depends on a nondeterministic kernel): `SAF_TEST_DETERMINISTIC=1 make test`."""
from __future__ import annotations

import os

import pytest

from saf_test_helpers.golden import GOLDEN


def pytest_configure(config):
    if os.environ.get("SAF_TEST_DETERMINISTIC") == "1":
        import torch
        torch.use_deterministic_algorithms(True)


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
