"""The certificate of a grid-trained run (issue 28) proves "deployed network == trained model": the on_grid,
grid_rules, exact_sum and grid_modes rows, each shown failing on an injected case; the SAF-form rows (a
non-dyadic leak, F, saturation) become notes. A beta 0.9 net fine-tuned on the grid exports EXACT and verify
PASSes with the trained pair at 0 mismatches; its float export stays NOT EXACT. sklearn digits, small nets."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from saf.deploy.cli.main import main
from saf.export.ir import STATE_MAX
from saf.export.pipeline.grid import calibrate_grid, forward_rows, grid_graph, on_grid_check
from saf.export.proof.certificate import GRID_ROWS, certify
from saf.export.proof.grid_rows import exact_sum_checks, grid_modes_check, grid_rules_check
from saf.hw_targets import get_target
from saf.train.data import load_dataset
from saf.train.grid import forward as fw
from saf.train.grid.forward import int_weights
from saf.train.methods.registry import readout_for
from saf.train.modules.network import SpikingNet
from saf.train.spec import load_spec, with_neuron

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net09():
    """A beta 0.9 mlp on the Loihi grid (no exact SAF form: 3686/4096 is not a power of two)."""
    data = load_dataset("digits", T=4)
    torch.manual_seed(0)
    spec = with_neuron(load_spec("mlp-digits"), 0.9, 1.0)
    spec["T"] = 4
    net = SpikingNet(spec, readout=readout_for("saf-e", 0.9))
    net.grid = calibrate_grid(net, {"method": "saf-e", "T": 4}, data, "loihi")
    stored = int_weights(net, net.grid)
    return net, grid_graph(net, net.grid, stored, get_target("loihi"), {}, "test"), stored


def _cert(net, g, stored):
    return certify(g, extra=(on_grid_check(net, net.grid, stored, g), *forward_rows(net, net.grid, g)))


def _rows(cert) -> dict:
    out = {}
    for c in cert.checks:
        out.setdefault(c.check, []).append(c)
    return out


def test_non_dyadic_grid_run_is_exact_with_the_grid_rows(net09):
    net, g, stored = net09
    cert = _cert(net, g, stored)
    rows = _rows(cert)
    assert cert.exact and cert.grid and not cert.saf_form, cert.format()
    assert set(GRID_ROWS) <= set(rows) and all(c.ok for r in GRID_ROWS for c in rows[r])
    assert "leak" not in rows and "frac_bits" not in rows
    assert any(i.startswith("leak (all) not needed") and "fails" in i for i in cert.info)
    assert "deployed network == trained grid model" in cert.format()
    flt = copy.deepcopy(g)                                 # the same integers as a float run's graph: NOT EXACT
    flt.meta = {k: v for k, v in g.meta.items() if k != "trained_on_grid"}
    fc = certify(flt)
    assert not fc.exact and not [c for c in fc.checks if c.check == "leak"][0].ok


def test_a_grid_run_without_its_rows_is_not_exact(net09):
    net, g, stored = net09
    cert = certify(g)
    assert not cert.exact
    assert {r.split(" ")[0] for r in cert.reasons} == set(GRID_ROWS)
    assert all("not derived" in r for r in cert.reasons)


def test_exact_sum_fails_past_the_dtypes_mantissa(net09):
    net, g, _ = net09
    assert all(c.ok for c in exact_sum_checks(g, 53, "float64"))
    assert not all(c.ok for c in exact_sum_checks(g, 11, "float16"))     # float16 could not hold the 24-bit state
    big = copy.deepcopy(g)
    big.layers[0].weight = big.layers[0].weight * (1 << 36)              # worst partial sum << F past 2^53
    rows = exact_sum_checks(big, 53, "float64")
    assert not rows[0].ok and ">= 2^53" in rows[0].detail and rows[1].ok


def test_grid_rules_fail_on_another_decay_or_saturation(net09, monkeypatch):
    _, g, _ = net09
    assert grid_rules_check(g).ok
    with monkeypatch.context() as m:                                     # round to nearest instead of truncating
        m.setattr(fw, "trunc_decay_int", lambda x, d: (x * (4096 - int(d)) + 2048) >> 12)
        row = grid_rules_check(g)
        assert not row.ok and "not the IR's function" in row.detail and "differs from the IR's" in row.detail
    with monkeypatch.context() as m:                                     # a 2^23 limit instead of 2^23 - 1
        m.setattr(fw, "saturate", lambda v: v.clamp(-STATE_MAX - 1, STATE_MAX + 1))
        row = grid_rules_check(g)
        assert not row.ok and "saturation" in row.detail


def test_grid_modes_fail_on_a_mode_mismatch(net09):
    net, g, _ = net09
    assert grid_modes_check(net, g).ok
    strict = copy.deepcopy(g)
    strict.layers[0].compare = ">"
    row = grid_modes_check(net, strict)
    assert not row.ok and "compare '>='" in row.detail
    zero = copy.deepcopy(g)
    zero.layers[0].reset = "zero"
    assert not grid_modes_check(net, zero).ok
    other = copy.deepcopy(net)                                           # the forward's own compare, measured
    other.modes[0] = type(other.modes[0])(">", other.modes[0].reset)
    assert not grid_modes_check(other, g).ok


def test_saturation_is_accepted_for_a_grid_run_only(net09):
    net, g, stored = net09
    big = copy.deepcopy(g)
    big.layers[0].weight = big.layers[0].weight * 64                     # worst |V| past 2^23 - 1
    rows = _rows(certify(big, extra=forward_rows(net, net.grid, big)))["state_24bit"]
    assert rows[0].ok and "accepted" in rows[0].detail and "> 2^23-1" in rows[0].detail
    flt = copy.deepcopy(big)
    flt.meta = {}
    assert not _rows(certify(flt))["state_24bit"][0].ok
    high = copy.deepcopy(big)                                             # TH << F must still fit the state
    high.layers[0].threshold = STATE_MAX
    assert not _rows(certify(high, extra=forward_rows(net, net.grid, high)))["state_24bit"][0].ok


def test_beta09_finetuned_on_the_grid_exports_exact_and_verifies(tmp_path, capsys):
    src = tmp_path / "float"
    assert main(["train", "--model", "mlp-digits", "--method", "saf-e", "--T", "4", "--lam", "0.9", "--epochs", "1",
                 "--limit-train", "400", "--no-progress", "--out", str(src)]) == 0
    assert main(["export", str(src), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(tmp_path / "bf")]) == 0
    m = json.loads((tmp_path / "bf" / "manifest.json").read_text())
    assert not m["certificate"]["exact"] and any("leak" in r for r in m["certificate"]["reasons"])
    assert main(["finetune", str(src), "--deploy-target", "loihi", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0
    assert main(["export", str(tmp_path / "ft"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(tmp_path / "b")]) == 0
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["certificate"]["exact"] and m["certificate"]["grid"], m["certificate"]["reasons"]
    capsys.readouterr()
    rc = main(["verify", str(tmp_path / "b"), "--limit", "60", "--lava-limit", "10", "--no-progress",
               "--out", str(tmp_path / "v")])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["certificate"]["exact"] and rep["certificate_matches_manifest"] and rep["certificate"]["grid"]
    trained = [p for p in rep["pairs"] if "trained" in (p["a"], p["b"]) and "saf-int" not in (p["a"], p["b"])]
    assert {p["b"] if p["a"] == "trained" else p["a"] for p in trained} >= {"emulator", "onnx"}
    for p in trained:                          # the trained model against every deployed form, bit for bit
        assert p["expected_exact"] and p["ok"] and p["samples"] > 0, p
        assert p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 and p["spikes_total"] > 0
    saf = [p for p in rep["pairs"] if "saf-int" in (p["a"], p["b"])]
    assert saf and all(not p["expected_exact"] for p in saf)   # lam_q = 3686/4096: the SAF form is not claimed equal
