"""Issue 16: `saf bench infer` reports dense-equivalent throughput against a matmul peak measured in
the same run, and `saf run` / `saf info` estimate Loihi energy and latency from cited figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from saf.deploy.backends.registry import Bundle
from saf.deploy.backends.work import dense_equivalent_macs
from saf.deploy.bench.peak import matmul_peak_gflops, peak_fraction
from saf.deploy.main import main
from saf.hw_targets.energy import FIGURES, LayerActivity, estimate

GOLDEN = Path(__file__).parent / "golden" / "demo"


@pytest.fixture(scope="module")
def demo_bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf")
    for t in ("loihi", "onnx"):
        assert main(["export", str(GOLDEN / "model.safetensors"), "--target", t, "--out", str(d / t)]) == 0
    return d / "loihi", d / "onnx"


def test_energy_model_by_hand():
    e = estimate("loihi1", [LayerActivity("a", neurons=5, synops=1000.0, spikes=4.0, cores=2)], T=2, steps=3)
    # 1000 synops * 23.6 + 4 spikes * (1.7 + 4 hops * 3.5) + 4 active * 81 + (5*2 - 4) inactive * 52 (pJ)
    pj = 1000 * 23.6 + 4 * (1.7 + 4 * 3.5) + 4 * 81 + 6 * 52
    assert e["energy_uj"] == pytest.approx(pj * 1e-6, rel=1e-12)
    # per step: (1000 / 2 steps / 2 cores) * 3.5 ns + (5 / 2) neurons * 5.3 ns (mostly inactive) + 465 ns barrier
    step_ns = 250 * 3.5 + 2.5 * 5.3 + 465
    assert e["latency_us"] == pytest.approx(3 * step_ns * 1e-3, rel=1e-12)
    assert e["estimate"] is True and "estimate" in e["note"]
    e2 = estimate("loihi1", [LayerActivity("a", neurons=5, synops=1001.0, spikes=4.0, cores=2)], T=2, steps=3)
    assert e2["energy_uj"] != e["energy_uj"]          # the synop count reaches the result


def test_every_figure_is_cited_and_loihi2_reuse_is_marked_an_assumption():
    for target, figs in FIGURES.items():
        for f in figs.values():
            assert f.source and f.unit and f.value > 0
            if target.startswith("loihi2") or target == "loihi":
                assert f.assumption and f.note
    assert all("Davies" in f.source for k, f in FIGURES["loihi1"].items() if k != "mean_hops")
    assert not FIGURES["loihi1"]["synop_pj"].assumption and FIGURES["loihi1"]["mean_hops"].assumption
    with pytest.raises(ValueError, match="no energy figures"):
        estimate("onnx", [], T=1)


def test_dense_equivalent_macs_of_the_demo(demo_bundles):
    g = Bundle.load(demo_bundles[0]).graph
    # conv1 16x8x8 outputs x 1*3*3, conv2 32x8x8 x 16*3*3, fc3 128 x 512 (its AvgPool(2) is a sum-pool
    # stage, export/fold/sum_pool.py: 2,048 inputs folded), readout 10 x 128; T = 6
    assert g.layers[2].in_pool == 2
    assert dense_equivalent_macs(g) == (1024 * 9 + 2048 * 144 + 128 * 512 + 10 * 128) * 6
    assert peak_fraction(1000.0, 3_000_000, 60.0) == pytest.approx(0.1)
    pk = matmul_peak_gflops(n=128, seconds=0.0, min_reps=2)
    assert pk["gflops"] > 0 and pk["reps"] >= 2


def test_info_and_run_print_a_cited_estimate(demo_bundles, capsys):
    loihi, onnx = demo_bundles
    assert main(["info", str(loihi)]) == 0
    out = capsys.readouterr().out
    assert "Loihi estimate (loihi2)" in out and "upper bound" in out and "Davies et al. IEEE Micro 2018" in out
    assert "assumption 1: no per-operation figures are published for Loihi 2" in out
    assert main(["info", str(onnx)]) == 0
    assert "no Loihi estimate for target onnx" in capsys.readouterr().out
    assert main(["info", str(loihi), "--json"]) == 0
    ub = json.loads(capsys.readouterr().out)["loihi_estimate"]
    assert main(["run", str(loihi), "--limit", "20", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    e = st["loihi_estimate"]
    assert e["estimate"] and e["activity"].startswith("measured") and 0 < e["energy_uj"] < ub["energy_uj"]
    # the synaptic-op energy is exactly the run's synops at 23.6 pJ
    assert e["energy_breakdown_uj"]["synaptic_ops"] == pytest.approx(st["synops_per_inference"] * 23.6e-6)
    assert e["steps"] == 6 + 4 + 1                 # T plus one step of delay per connection and per sum-pool stage
    assert main(["run", str(loihi), "--limit", "5"]) == 0
    assert "Loihi estimate (loihi2)" in capsys.readouterr().out


def test_bench_infer_reports_peak_fraction(demo_bundles, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "infer", str(demo_bundles[0]), "--backends", "emulator,onnx", "--limit", "40",
                 "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "float32 matmul peak of this machine" in text and "of peak" in text
    r = json.loads(out.read_text())
    assert r["matmul_peak"]["gflops"] > 0 and r["dense_macs_per_sample"] == (1024 * 9 + 2048 * 144 + 128 * 512 + 10 * 128) * 6
    for row in r["rows"]:
        assert row["dense_peak_fraction"] == pytest.approx(
            row["samples_per_s"] * 2 * r["dense_macs_per_sample"] / (r["matmul_peak"]["gflops"] * 1e9))
        assert row["peak_fraction"] == pytest.approx(
            row["samples_per_s"] * 2 * row["macs_per_sample"] / (r["matmul_peak"]["gflops"] * 1e9))
        assert isinstance(row["meets_peak_goal"], bool)


def test_onnx_computes_the_constant_input_current_once():
    """With a constant input the model reads x[0] only (one first-layer synapse for all T steps):
    garbage in x[1:] changes nothing, while x[0] does; outputs equal the emulator's."""
    import numpy as np
    import onnxruntime as ort

    from saf.deploy.backends.emulator import run_emulator
    from saf.export.onnx_model import build_onnx_model
    from saf.export.synthetic import random_graph, random_inputs

    g = random_graph("conv", T=4, lam=0.5, seed=3)
    x = random_inputs(g, 6, seed=3)
    sess = ort.InferenceSession(build_onnx_model(g, spikes=False).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    xs = np.repeat(x[None].astype(np.float32), g.T, axis=0)
    ref = run_emulator(g, x, record_spikes=False).readout
    assert np.array_equal(sess.run(["readout"], {"x": xs})[0], ref)
    junk = xs.copy()
    junk[1:] = np.random.default_rng(0).integers(0, g.input_max + 1, size=junk[1:].shape)
    assert np.array_equal(sess.run(["readout"], {"x": junk})[0], ref)
    bad = xs.copy()
    bad[0] = junk[1]
    assert not np.array_equal(sess.run(["readout"], {"x": bad})[0], ref)
