"""Rules every entry point of verify shares (issue 22, items 4-6): names or records, the same checks;
a PASS needs a pair of distinct backends that the certificate covers and expects exact; pairs that are
not exact count readout mismatches; results are compared on every layer, with equal shapes, or fail."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from saf.deploy.backends.registry import BACKENDS, Bundle
from saf.deploy.backends.spec import BackendError, BackendSpec, check_specs
from saf.deploy.verify import verify
from saf.deploy.verify.compare import compare_pair
from saf.deploy.verify.fuzz import fuzz_verify
from saf.deploy.verify.pytest_plugin import check_fidelity
from saf.export.bundle.store import write_bundle
from saf.export.result import BackendResult
from saf.export.synthetic import random_graph, random_inputs


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    from saf.export.onnx_model import save_onnx_model

    g = random_graph("dense", T=4, lam=0.5, seed=2)
    out = write_bundle(g, tmp_path_factory.mktemp("syn") / "b", extra={"certificate": {"exact": None}},
                       writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    return Bundle.load(out), random_inputs(g, 24, seed=0)


def _renamed(name: str, base: str, **kw) -> BackendSpec:
    return dataclasses.replace(BACKENDS[base], name=name, **kw)


@pytest.mark.parametrize("backends,msg", [
    ([BACKENDS["emulator"], BACKENDS["emulator"]], "emulator given twice"),
    (["emulator", BACKENDS["emulator"]], "emulator given twice"),
    ([BACKENDS["emulator"], BACKENDS["saf-float"]], "at least two distinct integer backends"),
    ([BACKENDS["emulator"]], "at least two distinct integer backends"),
    ([], "none given"),
    ([BACKENDS["emulator"], _renamed("gpu-less", "onnx", unavailable=lambda: "no such device")],
     "gpu-less cannot run here: no such device"),
])
def test_records_are_checked_like_names(syn, backends, msg):
    """Old code: verify() took any list of records as given (a backend compared with itself passed)."""
    b, xq = syn
    with pytest.raises(BackendError, match=msg):
        verify(b, xq, None, backends)
    with pytest.raises(BackendError, match=msg):
        fuzz_verify(b, backends, 40, 0, 5, True, 0.0, xq)


def test_counts_are_checked_by_the_library_too(syn):
    b, xq = syn
    for kw, msg in (({"fuzz": -1}, "--fuzz must be >= 0"), ({"seed": -2}, "--seed must be >= 0"),
                    ({"mismatch_bound": 1.5}, "--mismatch-bound must be in"), ({"lava_limit": 0}, "--lava-limit")):
        with pytest.raises(BackendError, match=msg):
            verify(b, xq, None, ["saf-int", "emulator"], **kw)


def test_pytest_plugin_applies_the_same_rules(syn):
    with pytest.raises(BackendError, match="given twice"):
        check_fidelity(syn[0].path, data=None, backends=("emulator", "emulator"))


def test_no_exact_pair_is_no_pass(syn):
    """emulator vs an uncovered backend (onnx-cuda's record, run on the CPU provider here) agree spike for
    spike, yet nothing the certificate covers was compared exactly: old code said PASS."""
    b, xq = syn
    cuda = _renamed("onnx-uncovered", "onnx-cuda", runner=BACKENDS["onnx"].runner, unavailable=lambda: "")
    rep = verify(b, xq, None, [BACKENDS["emulator"], cuda])
    assert all(p["spike_mismatches"] == 0 for p in rep.pairs)
    assert not rep.ok and any("no pair of backends is expected to agree exactly" in f and "add saf-int or onnx"
                              in f for f in rep.failures), rep.failures
    assert verify(b, xq, None, [BACKENDS["emulator"], cuda, BACKENDS["onnx"]]).ok


def test_not_exact_certificate_needs_two_lif_backends(tmp_path):
    from saf.export.onnx_model import save_onnx_model

    g = random_graph("conv", T=8, lam=0.9, seed=3)           # non-dyadic leak: NOT EXACT
    b = Bundle.load(write_bundle(g, tmp_path / "b", extra={"certificate": {"exact": None}},
                                 writers={"model.onnx": lambda p: save_onnx_model(g, p)}))
    xq = random_inputs(g, 16, seed=1)
    rep = verify(b, xq, None, ["saf-int", "emulator"], mismatch_bound=1.0)
    assert not rep.certificate["exact"] and not rep.ok
    assert any("NOT EXACT" in f and "add onnx" in f for f in rep.failures), rep.failures
    assert verify(b, xq, None, ["saf-int", "emulator", "onnx"], mismatch_bound=1.0).ok


def _readout_off_by_one(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    r = BACKENDS["onnx"].runner(bundle, g, xq, record_spikes, record_potentials, progress)
    r.readout = r.readout.copy()
    r.readout[:, 0] += 1                                       # every sample's class-0 readout wrong
    return r


def test_pairs_that_are_not_exact_count_readout_mismatches(syn):
    """Old code: a non-exact pair passed on its spike mismatch rate alone, readouts ignored."""
    b, xq = syn
    bad = _renamed("onnx-bad-readout", "onnx-cuda", runner=_readout_off_by_one, unavailable=lambda: "")
    rep = verify(b, xq, None, [BACKENDS["saf-int"], BACKENDS["emulator"], bad], mismatch_bound=0.05)
    by = {(p["a"], p["b"]): p for p in rep.pairs}
    p = by[("emulator", "onnx-bad-readout")]
    assert p["spike_mismatches"] == 0 and p["readout_mismatches"] == len(xq) and not p["ok"]
    assert not rep.ok and any("(readouts)" in f for f in rep.failures)


def _result(name, spikes, readout):
    return BackendResult(backend=name, readout=readout, spikes=spikes)


def test_fewer_layers_or_other_shapes_fail_the_pair():
    """Old code zipped the layer lists: a backend returning fewer layers was compared on fewer layers."""
    rng = np.random.default_rng(0)
    sp = [rng.random((5, 4, n)) < 0.3 for n in (8, 6, 3)]
    ro = rng.integers(-9, 9, (5, 10))
    names = ["l1", "l2", "l3"]
    full = _result("a", sp, ro)
    assert "shape_error" not in compare_pair(full, _result("b", [s.copy() for s in sp], ro.copy()), names)
    cases = [(_result("b", sp[:2], ro), "b returned 2 spike layers, the network has 3"),
             (_result("b", [sp[0], sp[1][:, :, :5], sp[2]], ro), "layer l2: spike arrays of shape 4x6 (a) and 4x5 (b)"),
             (_result("b", [sp[0], sp[1][:, :3], sp[2]], ro), "layer l2"),
             (_result("b", sp, ro[:, :9]), "readouts of shape 10 (a) and 9 (b)"),
             (_result("b", [sp[0][:4], sp[1], sp[2]], ro), "layer l1 spikes have shape [4, 4, 8]"),
             (_result("b", None, ro), "b returned no spike layers")]
    for other, msg in cases:
        p = compare_pair(full, other, names)
        assert msg in p["shape_error"], p["shape_error"]


def test_verify_fails_a_backend_that_drops_a_layer(syn):
    b, xq = syn

    def drop_last(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
        r = BACKENDS["onnx"].runner(bundle, g, xq, record_spikes, record_potentials, progress)
        r.spikes = r.spikes[:-1]
        return r
    short = _renamed("onnx-short", "onnx", runner=drop_last)
    rep = verify(b, xq, None, [BACKENDS["saf-int"], BACKENDS["emulator"], short])
    assert not rep.ok and any("onnx-short returned 1 spike layers, the network has 2" in f for f in rep.failures)


def test_check_specs_is_the_one_rule():
    assert [s.name for s in check_specs([BACKENDS["saf-int"], BACKENDS["emulator"]])] == ["saf-int", "emulator"]
