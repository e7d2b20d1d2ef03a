"""`saf bench train --profile`: the per-phase table and JSON on a tiny net, the saved-byte split adding up,
a planted extra saved tensor showing up in the phase and layer that saved it. No timing assertions."""
from __future__ import annotations

import json

import pytest
import torch

from saf.deploy.main import main
from saf.train.bench.cost import bench_train_profile
from saf.train.bench.profile import PHASES, PROFILE_METHODS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prof():
    return bench_train_profile("conv-digits", 2, 3, PROFILE_METHODS, "cpu", steps=1, warmup=0, ops=False)


def test_profile_layout_and_split(prof):
    assert prof["kind"] == "saf-bench-train-profile" and prof["T"] == 3
    assert list(prof["methods"]) == list(PROFILE_METHODS)
    for m, q in prof["methods"].items():
        assert set(q["phases_s"]) == set(PHASES) and all(v >= 0 for v in q["phases_s"].values())
        assert q["phases_s"]["backward"] > 0 and q["phases_s"]["synapse"] > 0 and q["phases_s"]["neuron"] > 0
        assert sum(q["saved_by_phase"].values()) == q["saved_bytes"] > 0, m
        assert sum(sum(v.values()) for v in q["saved_by_layer"].values()) == q["saved_bytes"], m
        assert q["saved_by_phase"]["backward"] == q["saved_by_phase"]["optimizer"] == 0
    # one step's graph for the online methods, all T = 3 steps' for BPTT
    assert prof["methods"]["bptt"]["saved_bytes"] > 2.9 * prof["methods"]["ottt-o"]["saved_bytes"]
    assert prof["methods"]["saf-e"]["state_bytes"] * 3 == prof["methods"]["ottt-o"]["state_bytes"]
    assert {"saf-e/ottt-o", "saf-f/ottt-a"} == set(prof["ratios"])
    json.dumps(prof)


def test_a_planted_saved_tensor_lands_in_its_phase_and_layer(monkeypatch):
    """An extra tensor saved by the neuron step of every layer (a fault: memory the math does not need)
    must show up as exactly its bytes under 'neuron', per layer."""
    import saf.train.modules.network as netmod

    base = bench_train_profile("conv-digits", 2, 2, ("saf-e",), "cpu", steps=1, warmup=0, ops=False)
    real = netmod.saf_step_fused

    def wasteful(U, a_prev, *args, **kw):
        a = real(U, a_prev, *args, **kw)
        return a * torch.ones_like(a)                     # MulBackward saves both operands: 2 x |a|

    monkeypatch.setattr(netmod, "saf_step_fused", wasteful)
    bad = bench_train_profile("conv-digits", 2, 2, ("saf-e",), "cpu", steps=1, warmup=0, ops=False)
    b, q = base["methods"]["saf-e"], bad["methods"]["saf-e"]
    extra = q["saved_bytes"] - b["saved_bytes"]
    assert extra > 0 and q["saved_by_phase"]["neuron"] - b["saved_by_phase"]["neuron"] == extra
    for layer, per in q["saved_by_layer"].items():
        if layer.startswith("L"):
            assert per.get("neuron", 0) > b["saved_by_layer"][layer].get("neuron", 0), layer


def test_cli_profile_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    rc = main(["bench", "train", "--profile", "--model", "conv-digits", "--batch", "2", "--T", "2", "--steps", "1",
               "--warmup", "0", "--methods", "saf-e,ottt-o", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "saf-e/ottt-o: time" in text and "backward" in text and "saved MB per layer" in text
    r = json.loads(out.read_text())
    assert set(r["methods"]) == {"saf-e", "ottt-o"} and r["methods"]["saf-e"]["top_ops"]


@pytest.mark.parametrize("argv,needle", [(["--T", "2,4"], "--T with --profile"), (["--plot", "x.png"], "--plot")])
def test_cli_profile_bad_input(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "train", "--profile", "--model", "conv-digits"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]


def test_cli_sws_save_keeps_the_intermediates_recompute_does_not(tmp_path, capsys):
    """--sws save (plain autograd, the default) saves the weight standardization's intermediates;
    --sws recompute recomputes them in backward: the sWS phase's saved bytes show it."""
    got = {}
    for mode in ("save", "recompute"):
        out = tmp_path / f"{mode}.json"
        assert main(["bench", "train", "--profile", "--model", "conv-digits", "--batch", "2", "--T", "1",
                     "--steps", "1", "--warmup", "0", "--methods", "saf-e", "--no-ops", "--sws", mode,
                     "--out", str(out), "--quiet"]) == 0
        r = json.loads(out.read_text())
        assert r["config"]["sws"] == mode
        got[mode] = r["methods"]["saf-e"]["saved_by_phase"]["sWS"]
    capsys.readouterr()
    assert got["recompute"] == 0 < got["save"]
    import saf.train.functional.ws as ws
    assert ws.RECOMPUTE is False                           # the default, restored after the run


def test_per_layer_times_add_up_to_the_layered_phases(prof):
    for m, q in prof["methods"].items():
        per = q["time_by_layer_s"]
        assert set(per) >= {"L0", "readout"}, m
        layered = q["phases_s"]["sWS"] + q["phases_s"]["synapse"]          # one repeat: medians are the values
        assert abs(sum(per.values()) - layered) <= 1e-9 + 1e-9 * layered, m


def test_a_slowed_layer_shows_up_in_its_own_column(monkeypatch):
    """A fault planted in one layer's synapse (a 40 ms sleep per call) lands in that layer's time."""
    import time

    import saf.train.modules.synapse as synmod

    real = synmod.Synapse.forward
    seen = []

    def slow(self, *a, **k):
        if not seen:
            seen.append(id(self))
        if id(self) == seen[0]:
            time.sleep(0.04)
        return real(self, *a, **k)

    monkeypatch.setattr(synmod.Synapse, "forward", slow)
    q = bench_train_profile("conv-digits", 2, 2, ("saf-e",), "cpu", steps=1, warmup=0, ops=False)["methods"]["saf-e"]
    per = q["time_by_layer_s"]
    assert per["L0"] >= 2 * 0.04 and max(per, key=per.get) == "L0", per     # T = 2 calls of the first synapse
