"""`saf verify --fuzz`: inputs beyond the dataset find a threshold tie in every spiking layer of the
demo network and states closer to the 24-bit bound than any dataset input, and catch an injected
fault the whole dataset misses; the failing input is saved and its command line reproduces it."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from saf.deploy.backends.registry import Bundle
from saf.deploy.backends.emulator import emulate
from saf.deploy.verify.fuzz_inputs import CLASSES, input_range, make_fuzz_inputs
from saf.deploy.main import main

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def fuzzed(demo_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("fz") / "v"
    rc = main(["verify", str(demo_bundle), "--backends", "saf-int,emulator,onnx", "--fuzz", "30", "--seed", "1",
               "--out", str(out), "--report", str(out / "r.md"), "--no-progress"])
    text = (out / "summary.txt").read_text() + (out / "r.md").read_text()
    return rc, json.loads((out / "verify.json").read_text()), text


def test_fuzz_finds_a_tie_in_every_layer_and_goes_beyond_the_dataset(fuzzed):
    rc, rep, text = fuzzed
    assert rc == 0 and rep["ok"]
    fz = rep["fuzz"]
    assert fz["classes"] == {"tie": 6, "bound": 6, "uniform": 6, "sparse": 6, "extreme": 6}
    assert all(v == 30 for v in fz["samples"].values()) and len(fz["pairs"]) == 3
    assert all(p["ok"] and p["samples"] == 30 for p in fz["pairs"])
    for f, d, s in zip(fz["layers"], fz["dataset_layers"], fz["search"]):
        assert s["tie_found"] and f["ties_by_class"]["tie"] >= 1, f     # constructed ties, every layer
    # the closest approach to the 24-bit bound: beyond every dataset input (conv1 by construction)
    assert max(f["max_abs_v"] for f in fz["layers"]) > max(d["max_abs_v"] for d in fz["dataset_layers"])
    assert fz["layers"][0]["max_abs_v"] > 2 * fz["dataset_layers"][0]["max_abs_v"]
    assert "ties fuzz" in text and "fuzz: 30 inputs beyond the dataset" in text and "## Fuzz: 30 inputs" in text


def test_constructed_inputs_really_sit_on_the_threshold(demo_bundle):
    """The tie inputs of layer l put some neuron of layer l at V == TH<<F; the strict comparison
    (Lava's stock LIF) therefore gives a different spike there -- the case ties exist to catch."""
    g = Bundle.load(demo_bundle).graph
    fz = make_fuzz_inputs(g, 20, seed=3)
    lo, hi = input_range(g)
    assert fz.xq.min() >= lo and fz.xq.max() <= hi and set(fz.classes) == set(CLASSES) and len(fz.xq) == 20
    assert np.array_equal(fz.xq, make_fuzz_inputs(g, 20, seed=3).xq)                 # reproducible
    ge = emulate(g, fz.xq, record_potentials=True)
    gt = emulate(g, fz.xq, tie="gt")
    for li, lay in enumerate(g.spiking_layers):
        rows = [i for i, c in enumerate(fz.classes) if c == "tie"][2 * li:2 * li + 2]
        th = int(lay.threshold) << int(lay.frac_bits)
        assert (ge.potentials[li][rows] == th).any(), lay.name
        assert any((a != b).any() for a, b in zip(ge.spikes, gt.spikes))


def test_fault_missed_by_the_dataset_is_caught_by_fuzz_and_reproduced(demo_bundle, tmp_path, capsys):
    """u-21bit (the current held in a 21-bit wrapping register) never triggers on the 360 digits: the
    dataset's largest current is ~0.8 * 2^20. The fuzzer's constructed extreme input drives conv1 past
    2^20 and the comparison fails there; the saved input reproduces the failure."""
    args = ["verify", str(demo_bundle), "--backends", "saf-int,emulator", "--inject-fault", "u-21bit",
            "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "data")]) == 0                  # the dataset misses it
    rc = main(args + ["--fuzz", "15", "--out", str(tmp_path / "fz")])
    out = capsys.readouterr().out
    assert rc == 1 and "verify: FAIL" in out
    rep = json.loads((tmp_path / "fz" / "verify.json").read_text())
    assert all(p["ok"] for p in rep["pairs"])                                    # dataset pairs
    bad = [p for p in rep["fuzz"]["pairs"] if not p["ok"]]
    assert {p["b"] for p in bad} == {"emulator[u-21bit]"} and len(bad) == 2
    fz = rep["fuzz"]
    assert fz["failing"]["class"] in ("bound", "uniform", "extreme") and Path(fz["failing_file"]).is_file()
    x = np.load(fz["failing_file"])
    assert x.shape == (1, 1, 8, 8)
    argv = shlex.split(fz["reproduce"])
    assert argv[:2] == ["saf", "verify"]
    assert main(argv[1:] + ["--no-progress"]) == 1
    again = json.loads((tmp_path / "fz-fuzz-repro" / "verify.json").read_text())
    assert not again["ok"] and again["samples"]["saf-int"] == 1
    # the report folder holds only what verify writes, so a rerun into it replaces it (no --force needed)
    assert sorted(p.name for p in (tmp_path / "fz").iterdir()) == ["fuzz-failure.npy", "summary.txt", "verify.json"]
    assert main(args + ["--fuzz", "15", "--out", str(tmp_path / "fz")]) == 1


def test_lava_runs_on_a_subset_of_the_fuzz_inputs(demo_bundle, tmp_path):
    rc = main(["verify", str(demo_bundle), "--backends", "saf-int,emulator,lava", "--limit", "3", "--lava-limit",
               "8", "--fuzz", "15", "--out", str(tmp_path / "v"), "--no-progress"])
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rc == 0 and rep["ok"], rep["failures"]
    assert rep["fuzz"]["samples"] == {"saf-int": 15, "emulator": 15, "lava": 8}
    lava_pairs = [p for p in rep["fuzz"]["pairs"] if "lava" in (p["a"], p["b"])]
    assert len(lava_pairs) == 2 and all(p["samples"] == 8 and p["ok"] for p in lava_pairs)


def test_first_layer_extremes_reach_the_exact_current_bound(demo_bundle):
    """The constructed near-bound input of the first layer is the worst case, not an approximation:
    its current at t = 1 equals the certificate's interval bound on |W x + B|."""
    from saf.deploy.verify.fuzz_inputs import first_layer_extremes
    from saf.export.proof.state_bound import layer_current_bound

    g = Bundle.load(demo_bundle).graph
    lay = g.layers[0]
    x = first_layer_extremes(g)
    v1 = emulate(g, x, record_potentials=True).potentials[0][:, 0]            # V[1] = I << F
    assert int(np.abs(v1).max()) == layer_current_bound(lay.weight, lay.bias, (), g.input_max) << lay.frac_bits


def test_a_layer_without_a_constructed_tie_is_reported():
    from saf.deploy.verify.fuzz import format_fuzz

    row = {"layer": "l", "ties": 0, "ties_by_class": {}, "max_abs_v": 1, "fraction_of_bound": 0.0, "near_bound": 0}
    fz = {"n": 15, "seed": 0, "classes": {"tie": 2}, "samples": {"a": 15}, "layers": [row],
          "dataset_layers": [dict(row)], "pairs": [],
          "search": [{"layer": "l", "tie_found": False, "closest_tie_gap": 32, "max_abs_v": 1}]}
    assert "found no input putting a neuron of l exactly on its threshold (closest: |V - TH<<F| = 32)" \
        in "\n".join(format_fuzz(fz, 0.01))
