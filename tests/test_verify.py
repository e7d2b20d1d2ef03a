"""`saf verify` / `saf run`: backends agree spike for spike on the demo network, the golden pin holds,
injected faults are caught with layer and time step, non-exact certificates report measured
mismatch instead of crashing, and bad input gives one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saf.deploy.backends.registry import Bundle, run_backend
from saf.deploy.main import main
from saf.deploy.verify import verify
from saf.export.bundle.store import write_bundle
from saf.export.synthetic import random_graph, random_inputs

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    return out


def _cli(capsys, *argv):
    rc = main(list(argv))
    o, e = capsys.readouterr()
    return rc, o, e


def test_demo_network_all_backends_agree_and_match_golden(demo_bundle, tmp_path, capsys):
    """The repo's golden pin: the demo network's outputs on all 360 digits test images (Lava on 20)."""
    rc, out, err = _cli(capsys, "verify", str(demo_bundle), "--backends", "saf-int,emulator,onnx,lava,saf-float",
                        "--lava-limit", "20", "--golden", str(GOLDEN), "--out", str(tmp_path / "v"),
                        "--report", str(tmp_path / "v" / "report.md"), "--no-progress")
    assert rc == 0, out + err
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["certificate"]["exact"] and rep["ok"]
    assert rep["samples"] == {"saf-int": 360, "emulator": 360, "onnx": 360, "lava": 20, "saf-float": 360}
    pairs = {(p["a"], p["b"]): p for p in rep["pairs"]}
    assert len(pairs) == 6 and all(p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 for p in pairs.values())
    assert pairs[("saf-int", "emulator")]["spikes_total"] == 360 * 6 * (1024 + 2048 + 128)
    assert all(g["ok"] for g in rep["golden"]) and len(rep["golden"]) == 4
    assert rep["accuracy"]["saf-int"] >= 0.97
    assert rep["float_to_quantized"]["samples"] == 360
    assert (tmp_path / "v" / "report.md").read_text().startswith("# saf verify: PASS")
    assert (tmp_path / "v" / "report.rates.png").stat().st_size > 1000


@pytest.mark.parametrize("fault,layer", [("lsb", "conv1"), ("tie", None), ("hard-reset", None), ("delay", "conv1"),
                                         ("pool-window", "fc3")])
def test_injected_faults_are_caught_with_layer_and_step(demo_bundle, tmp_path, capsys, fault, layer):
    rc, out, _ = _cli(capsys, "verify", str(demo_bundle), "--backends", "saf-int,emulator", "--limit", "40",
                      "--inject-fault", fault, "--out", str(tmp_path / "v"), "--no-progress")
    assert rc == 1
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    bad = [p for p in rep["pairs"] if not p["ok"]]
    assert {p["b"] for p in bad} == {f"emulator[{fault}]"} and len(bad) == 2
    first = bad[0]["first"]
    assert first["layer"] in ("conv1", "conv2", "fc3") and first["t"] >= 1
    if layer:
        assert first["layer"] == layer
    if fault == "tie":                        # strict > differs exactly at V == TH<<F
        assert first["potential_b"] == first["threshold_state"] and first["spike_a"] and not first["spike_b"]
    assert f"layer {first['layer']}, t={first['t']}" in out and "verify: FAIL" in out


def test_one_lsb_in_a_deep_layer_is_caught_there(demo_bundle):
    """A fault that only appears in one backend's graph, not through the emulator's switches."""
    b = Bundle.load(demo_bundle)
    import copy

    from saf.deploy.verify.inputs import load_inputs
    from saf.deploy.backends.emulator import emulate
    xq, y, _ = load_inputs(b, "digits", None, 120)
    good = emulate(b.graph, xq, record_potentials=True)
    # a neuron of fc3 that fires with less than one weight step (2 << F) to spare, and an input that
    # spiked at that step: lowering that one weight by one LSB of the even grid must silence it
    th = b.graph.layers[2].threshold << b.graph.layers[2].frac_bits
    v, s_in = good.potentials[2], good.spikes[1]
    n, t, j = [int(a[0]) for a in np.nonzero((v >= th) & (v < th + (2 << b.graph.layers[2].frac_bits)))]
    x = b.graph.layers[2].pool_input(s_in[n, t])      # what fc3's weight reads (sum-pooled counts)
    i = int(np.flatnonzero((x > 0) & (b.graph.layers[2].weight[j] > -250))[0])
    g = copy.deepcopy(b.graph)
    g.layers[2].weight[j, i] -= 2
    bad = run_backend("emulator", b, xq, graph=g)
    from saf.deploy.verify.compare import compare_pair
    p = compare_pair(good, bad, [l.name for l in b.graph.spiking_layers])
    assert p["layers"][0]["mismatches"] == 0 and p["layers"][1]["mismatches"] == 0
    assert p["layers"][2]["mismatches"] > 0 and p["first"]["layer"] == "fc3" and p["first"]["t"] <= t + 1


def _synthetic_bundle(tmp_path, g) -> Bundle:
    from saf.export.onnx_model import save_onnx_model

    out = write_bundle(g, tmp_path / "syn", extra={"certificate": {"exact": None}},
                       writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    return Bundle.load(out)


def test_non_dyadic_leak_is_not_exact_and_mismatch_is_measured(tmp_path):
    g = random_graph("conv", T=8, lam=0.9, seed=3)
    b = _synthetic_bundle(tmp_path, g)
    xq = random_inputs(g, 64, seed=1)
    rep = verify(b, xq, None, ["saf-int", "emulator", "onnx"], mismatch_bound=1.0)
    assert not rep.certificate["exact"] and any("not a power of two" in r for r in rep.certificate["reasons"])
    by = {(p["a"], p["b"]): p for p in rep.pairs}
    lif = by[("emulator", "onnx")]
    assert lif["expected_exact"] and lif["spike_mismatches"] == 0           # LIF forms still bit-identical
    cross = by[("saf-int", "emulator")]
    assert not cross["expected_exact"] and cross["spike_mismatches"] > 0     # measured, not assumed
    assert 0 < cross["mismatch_rate"] < 0.2 and rep.ok
    strict = verify(b, xq, None, ["saf-int", "emulator"], mismatch_bound=0.0)
    assert not strict.ok and "bound" in strict.failures[0]


def test_overflowing_network_is_not_exact_and_reports_saturation(tmp_path):
    g = random_graph("dense", T=16, lam=1.0, seed=0)
    g.layers[1].weight = g.layers[1].weight * 3000                      # big swings past +-2^23
    b = _synthetic_bundle(tmp_path, g)
    xq = random_inputs(g, 32, seed=2)
    rep = verify(b, xq, None, ["saf-int", "emulator", "onnx"], mismatch_bound=1.0)
    assert not rep.certificate["exact"] and any(r.startswith("state_24bit") for r in rep.certificate["reasons"])
    by = {(p["a"], p["b"]): p for p in rep.pairs}
    assert by[("emulator", "onnx")]["spike_mismatches"] == 0
    assert by[("saf-int", "emulator")]["spike_mismatches"] > 0
    sat = run_backend("emulator", b, xq).info["saturated"]
    assert sat["fc1"] > 0


def test_golden_drift_fails(demo_bundle, tmp_path, capsys):
    gold = tmp_path / "gold"
    rc, _, _ = _cli(capsys, "verify", str(demo_bundle), "--backends", "saf-int,emulator", "--limit", "30",
                    "--golden", str(gold), "--update-golden", "--out", str(tmp_path / "v"), "--no-progress")
    assert rc == 0
    d = json.loads((gold / "golden.json").read_text())
    d["readout"][7][3] += 1
    (gold / "golden.json").write_text(json.dumps(d))
    rc, out, _ = _cli(capsys, "verify", str(demo_bundle), "--backends", "saf-int,emulator", "--limit", "30",
                      "--golden", str(gold), "--out", str(tmp_path / "v"), "--no-progress")
    assert rc == 1 and "golden drift (saf-int)" in out and "first at sample 7" in out


def test_pytest_plugin_fixture(demo_bundle, saf_fidelity):
    rep = saf_fidelity(demo_bundle, limit=50, golden=str(GOLDEN))
    assert rep.ok and rep.certificate["exact"]


def test_run_reports_stats_and_raster(demo_bundle, tmp_path, capsys):
    rc, out, err = _cli(capsys, "run", str(demo_bundle), "--backend", "onnx", "--raster", str(tmp_path / "r.png"),
                        "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["samples"] == 360 and st["accuracy"] >= 0.97 and st["synops_per_inference"] > st["spikes_per_inference"]
    assert [l["layer"] for l in st["layers"]] == ["conv1", "conv2", "fc3"]
    assert (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.parametrize("argv,msg", [
    (["verify", "{b}", "--backends", "emulator,tpu"], "unknown tpu"),
    (["verify", "{b}", "--backends", "emulator"], "at least two distinct integer backends"),
    (["verify", "{b}", "--update-golden"], "--update-golden needs --golden"),
    (["verify", "{b}", "--backends", "saf-int,emulator", "--golden", "{tmp}/nogold"], "no golden outputs"),
    (["run", "{tmp}/nobundle"], "not a bundle directory"),
    (["run", "{b}", "--data", "iris"], "the bundle expects [1, 8, 8]"),
    (["run", "{b}", "--limit", "0"], "--limit must be >= 1"),
])
def test_bad_input(demo_bundle, tmp_path, capsys, argv, msg):
    argv = [a.format(b=demo_bundle, tmp=tmp_path) for a in argv]
    rc, _, err = _cli(capsys, *argv)
    assert rc == 2 and msg in err and err.count("\n") == 1, err
