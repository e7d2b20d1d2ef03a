"""Backends are typed records: verify needs two distinct integer backends, decides which pairs must
be equal from the records (form, convention, covered), derives the certificate's convention row from
their declarations, and a mismatch report shows each side's own potential or says it has none."""
from __future__ import annotations


import numpy as np
import pytest

from saf.deploy.backends.spec import BACKENDS, BackendError, BackendSpec, Form, resolve_backends
from saf.deploy.backends.registry import run_backend
from saf.deploy.backends.emulator import emulate
from saf.deploy.main import main
from saf.deploy.verify import format_report, verify
from saf.export.proof.certificate import certify, convention_check
from saf.export.ir import IR_CONVENTION, Convention
from saf.core.neuron_modes import ALL_MODES
from saf.export.synthetic import random_graph



@pytest.fixture(scope="module")
def demo(golden_demo_bundle):
    from saf.deploy.verify.inputs import load_inputs
    return golden_demo_bundle, load_inputs(golden_demo_bundle, "digits", None, 40)[0]


def _strict_runner(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    return emulate(g, xq, tie="gt", record_spikes=record_spikes, record_potentials=record_potentials)


STRICT = BackendSpec("strict-lif", Form.LIF, True, _strict_runner, Convention(">", "subtract"))


def test_every_registered_integer_backend_declares_the_ir_convention():
    """Every integer backend runs each layer's own modes: the default ones everywhere, all of them but on Lava's
    stock LIF (no subtract-undecayed: it refuses, naming lava-own)."""
    ints = {n: s for n, s in BACKENDS.items() if s.integer}
    assert set(ints) >= {"saf-int", "emulator", "onnx", "onnx-cuda", "lava", "lava-own"}
    assert all(IR_CONVENTION in s.convention for n, s in ints.items() if n != "netx")
    assert all(s.convention == frozenset(ALL_MODES) for n, s in ints.items() if n not in ("lava", "netx"))
    # lava-dl's netx loader builds Lava's stock LIF as it is: reset to zero, fire on v > vth (docs/netx.md)
    assert BACKENDS["netx"].convention == frozenset({Convention(">", "zero")})
    assert BACKENDS["lava"].convention == frozenset(m for m in ALL_MODES if m.reset != "subtract-undecayed")
    assert [n for n, s in BACKENDS.items() if not s.covered] == ["onnx-cuda"]


@pytest.mark.parametrize("names,msg", [
    (["emulator", "emulator"], "emulator given twice"),
    (["saf-int", "saf-int", "emulator"], "saf-int given twice"),
    (["emulator", "saf-float", "lif-float"], "at least two distinct integer backends"),
    (["emulator"], "at least two distinct integer backends"),
    ([], "(none given)"),
    (["emulator", "tpu"], "unknown tpu"),
])
def test_backend_lists_that_compare_nothing_are_refused(names, msg):
    with pytest.raises(BackendError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        resolve_backends(names)


def test_verify_itself_refuses_duplicates_and_empty_pairs(demo):
    """Not only the CLI: the library entry point (and so the pytest fixture) enforces it too."""
    b, xq = demo
    with pytest.raises(BackendError, match="given twice"):
        verify(b, xq, None, ["emulator", "emulator"])
    with pytest.raises(BackendError, match="no samples"):
        verify(b, xq[:0], None, ["saf-int", "emulator"])
    with pytest.raises(BackendError, match="--lava-limit"):
        verify(b, xq, None, ["saf-int", "lava"], lava_limit=0)


def test_convention_row_is_derived_from_declarations():
    g = random_graph("dense", T=4, lam=0.5, seed=0)
    ok = certify(g, {"saf-int": IR_CONVENTION, "emulator": IR_CONVENTION})
    row = [c for c in ok.checks if c.check == "convention"]
    assert ok.exact and len(row) == 1 and row[0].ok and "saf-int, emulator" in row[0].detail
    bad = certify(g, {"saf-int": IR_CONVENTION, "strict-lif": STRICT.convention})
    assert not bad.exact and any("strict-lif declares 'fire when V > TH<<F" in r for r in bad.reasons)
    hard = convention_check({"x": Convention(">=", "zero")})
    assert not hard.ok and "hard reset" in hard.detail
    assert not convention_check({}).ok                       # nothing declared: nothing certified
    assert certify(g).exact                                  # export's own forms (saf-int, ONNX) agree


def test_a_backend_declaring_another_convention_fails_the_row_and_is_measured(demo):
    b, xq = demo
    rep = verify(b, xq, None, [BACKENDS["saf-int"], BACKENDS["emulator"], STRICT], mismatch_bound=1.0)
    conv = [c for c in rep.certificate["checks"] if c["check"] == "convention"][0]
    assert not conv["ok"] and not rep.certificate["exact"] and rep.certificate_matches_manifest
    by = {(p["a"], p["b"]): p for p in rep.pairs}
    assert by[("saf-int", "emulator")]["expected_exact"] is False          # the certificate no longer holds
    strict = by[("emulator", "strict-lif")]
    assert not strict["expected_exact"] and strict["spike_mismatches"] > 0   # measured, and it differs
    assert "[NO] convention" in format_report(rep)


def test_mismatch_report_shows_each_sides_own_potential(demo):
    b, xq = demo
    rep = verify(b, xq, None, ["saf-int", "onnx"], fault="tie")
    assert not rep.ok
    by = {(p["a"], p["b"]): p for p in rep.pairs}
    f = by[("saf-int", "emulator[tie]")]["first"]
    own = run_backend("saf-int", b, xq[f["sample"]:f["sample"] + 1], record_potentials=True).potentials
    assert f["potential_a"] == int(own[f["layer_index"]][0, f["t"] - 1, f["neuron"]])
    assert f["potential_a_source"] == "saf-int's own V" and f["potential_b_source"] == "emulator[tie]'s own V"
    assert f["potential_a"] == f["potential_b"] == f["threshold_state"]     # the tie, from both sides
    g = by[("onnx", "emulator[tie]")]["first"]
    assert g["potential_a"] is None and "onnx cannot report its potential" in g["potential_a_source"]
    text = "\n".join(rep.failures)
    assert "onnx spike=1 V unknown (onnx cannot report its potential)" in text


def test_uncovered_backend_is_labelled_and_still_compared(demo):
    """onnx-cuda's record (covered=False) on a CPU-only machine: the same record with the CPU provider
    is compared against the mismatch bound and labelled 'not covered by the certificate'."""
    b, xq = demo
    cuda = BACKENDS["onnx-cuda"]
    like = BackendSpec("onnx-uncovered", cuda.form, cuda.reports_potentials, BACKENDS["onnx"].runner,
                       cuda.convention, covered=False)
    rep = verify(b, xq, None, [BACKENDS["emulator"], like, BACKENDS["saf-int"]])
    pairs = [p for p in rep.pairs if "onnx-uncovered" in (p["a"], p["b"])]
    assert len(pairs) == 2 and all(not p["expected_exact"] and not p["covered"] and p["samples"] == 40 for p in pairs)
    assert all(p["spike_mismatches"] == 0 for p in pairs) and rep.ok
    assert "not covered by the certificate" in format_report(rep)


@pytest.mark.parametrize("argv,msg", [
    (["verify", "{b}", "--backends", "emulator,emulator"], "emulator given twice"),
    (["verify", "{b}", "--backends", "emulator,saf-float"], "at least two distinct integer backends"),
    (["verify", "{b}", "--lava-limit", "0"], "--lava-limit must be >= 1, got 0"),
    (["verify", "{b}", "--lava-limit", "-3"], "--lava-limit must be >= 1, got -3"),
    (["verify", "{b}", "--limit", "-1"], "--limit must be >= 1"),
    (["verify", "{b}", "--fuzz", "-5"], "--fuzz must be >= 0"),
    (["verify", "{b}", "--backends", "saf-int,emulator", "--fuzz", "3"], "--fuzz must be >= 15"),
    (["verify", "{b}", "--fuzz", "20", "--seed", "-1"], "--seed must be >= 0"),
    (["verify", "{b}", "--inputs", "{tmp}/none.npy"], "--inputs"),
    (["verify", "{b}", "--inputs", "{tmp}/float.npy"], "needs quantized integers"),
    (["verify", "{b}", "--inputs", "{tmp}/big.npy"], "input range is [0, 31]"),
    (["run", "{b}", "--sample", "-1", "--limit", "2"], "--sample must be >= 0"),
    (["bench", "infer", "{b}", "--lava-limit", "0"], "--lava-limit must be >= 1"),
    (["demo", "--lava-limit", "0", "--out", "{tmp}/d"], "--lava-limit must be >= 1"),
])
def test_count_flags_are_validated(demo, tmp_path, capsys, argv, msg):
    np.save(tmp_path / "float.npy", np.zeros((2, 1, 8, 8)))
    np.save(tmp_path / "big.npy", np.full((2, 1, 8, 8), 40))
    rc = main([a.format(b=demo[0].path, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()
