"""pytest plugin (auto-loaded through the `pytest11` entry point): assert conversion fidelity in one
line in your own test suite.

    def test_my_net_is_faithful(saf_fidelity):
        saf_fidelity("bundles/my-net", data="digits", golden="tests/golden/my-net")

The fixture loads the bundle authenticated (a changed, missing or extra file or manifest field raises
BundleError naming the file), re-derives the bundle's certificate, runs the backends (at least two
distinct integer ones) on the dataset's test split,
requires every pair the certificate says is exact to match spike for spike, and (with golden=)
fails on any drift from the stored golden outputs (create them once with update_golden=True).
"""
from __future__ import annotations

import pytest

from saf.core.errors import SafError


class FidelityError(SafError, AssertionError):
    pass


def check_fidelity(bundle, data=None, limit=None, backends=("saf-int", "emulator", "onnx"),
                   golden=None, update_golden=False, lava_limit=50, data_root=None):
    """Run `saf verify` in-process; return the VerifyReport, raise FidelityError on any failure."""
    from saf.deploy.backends.registry import Bundle
    from saf.core.counts import check_count
    from saf.deploy.backends.spec import BackendError, as_specs
    from saf.deploy.verify.inputs import load_inputs
    from saf.deploy.verify import format_report, verify

    as_specs(backends, "backends")             # verify's rules, checked before any data is loaded
    check_count("limit", limit, 1, BackendError)
    b = Bundle.load(bundle)
    xq, y, name = load_inputs(b, data, data_root, limit)
    rep = verify(b, xq, y, list(backends), lava_limit=lava_limit, golden_dir=golden,
                 update_golden=update_golden, dataset=name)
    if not rep.ok:
        raise FidelityError("conversion fidelity check failed:\n" + format_report(rep))
    return rep


@pytest.fixture
def saf_fidelity():
    """Callable fixture: saf_fidelity(bundle, data=None, limit=None, backends=(...), golden=None)."""
    return check_fidelity
