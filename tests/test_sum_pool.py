"""Sum-pool stage (Layer.in_pool, export/fold/sum_pool.py): the pooled form equals the folded AvgPool form
bit for bit in every backend, a wrong pooling window is caught, and the Loihi 2 mapping shrinks."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from saf_test_helpers.reference_lif import reference_run
from saf_test_helpers.graphs import pooled_graph, pooled_inputs
from saf.deploy.verify.compare import compare_pair
from saf.deploy.backends.emulator import emulate, run_emulator
from saf.deploy.main import main
from saf.deploy.backends.onnx_runner import run_onnx
from saf.export.bundle.store import load_graph, read_manifest, write_bundle
from saf.export.proof.certificate import certify
from saf.export.fold.snn import fold_network
from saf.export.ir import Feedback, Graph, Layer, sum_pool
from saf.export.onnx_model import build_onnx_model
from saf.export.quantize import quantize
from saf.export.resources import check_resources
from saf.export.proof.saf_int import run_saf_int
from saf.export.fold.sum_pool import (SumPoolError, choose_pools, pool_layer, pool_problem, unpool_graph,
                                 unpool_layer, with_pools)
from saf.hw_targets import get_target
from saf.hw_targets.report import pool_comparison
from saf.train.checkpoint import load_model
from saf.train.modules.network import SpikingNet
from saf.train.spec import load_spec, with_neuron

GOLDEN_CKPT = Path(__file__).parent / "golden" / "demo" / "model.safetensors"


def _same(a, b) -> None:
    assert np.array_equal(a.readout, b.readout), (a.backend, b.backend)
    for x, y in zip(a.spikes, b.spikes):
        assert np.array_equal(x, y), (a.backend, b.backend)


def _demo_graphs() -> tuple:
    """(folded, pooled) quantized demo network (conv-digits: fc3 reads an AvgPool(2)ed 32x8x8 map)."""
    net, _, _ = load_model(GOLDEN_CKPT)
    layers, fb = fold_network(net.double())
    g, _ = quantize(layers, fb, T=6, lam=0.5, theta=1.0, target=get_target("loihi2"), input_scale=16,
                    input_bits=5, input_signed=False, input_exact=True)
    pools = {fl.name: fl.pool for fl in layers if fl.pool > 1}
    assert pools == {"fc3": 2}
    return g, with_pools(g, pools)


def _digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits
    return load_digits().images[:n].reshape(n, 1, 8, 8).astype(np.int64)


def test_sum_pool_counts_blocks():
    x = np.arange(2 * 4 * 4).reshape(1, -1)
    got = sum_pool(x, (2, 4, 4), 2).reshape(2, 2, 2)
    want = np.array([[[sum(int(v) for v in x.reshape(2, 4, 4)[c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel())
                       for j in range(2)] for i in range(2)] for c in range(2)])
    assert np.array_equal(got, want)
    assert sum_pool(np.ones((3, 16), bool), (1, 4, 4), 2).dtype == np.int64


def test_pool_and_unpool_are_inverse_and_exact():
    g = pooled_graph()
    folded = unpool_graph(g)
    for p, f in zip(g.layers, folded.layers):
        assert f.in_pool == 1
        if p.in_pool > 1:
            assert f.weight.size == p.weight.size * p.in_pool ** 2
            back = pool_layer(f, p.in_pool)
            assert np.array_equal(back.weight, p.weight) and (back.stride, back.padding) == (p.stride, p.padding)
    # a folded weight that is not block-constant is refused, never approximated
    bad = copy.deepcopy(unpool_layer(g.layers[1]))
    bad.weight[0, 0, 0, 0] += 2
    assert "not constant" in pool_problem(bad, 2)
    with pytest.raises(SumPoolError, match="conv2"):
        pool_layer(bad, 2)
    assert "not a multiple of the pool 3" in pool_problem(unpool_layer(g.layers[1]), 3)


def test_pooled_equals_folded_in_every_backend():
    """saf-int, emulator and ONNX on the pooled graph == the same on the folded graph == the literal
    reference (on the folded graph) == the certificate's bound unchanged."""
    g = pooled_graph()
    f = unpool_graph(g)
    xq = pooled_inputs(g, 24)
    runs = []
    for graph in (g, f):
        runs += [run_saf_int(graph, xq), run_emulator(graph, xq),
                 run_onnx(build_onnx_model(graph).SerializeToString(), graph, xq)]
    for r in runs[1:]:
        _same(runs[0], r)
    assert sum(int(s.sum()) for s in runs[0].spikes[1:]) > 0          # pooled layers do fire
    assert not np.all(runs[0].spikes[1]) and not np.all(runs[0].spikes[2])
    for i in range(4):
        ro, spikes, _ = reference_run(f, xq[i])
        assert np.array_equal(ro, runs[0].readout[i])
        for li, s in enumerate(spikes):
            assert np.array_equal(s, runs[0].spikes[li][i])
    assert certify(g).to_dict()["checks"] == certify(f).to_dict()["checks"]


def _gap_graph(leak: bool) -> Graph:
    """conv1 -> conv2 (sum pool 2) -> readout reading a 4x4 sum pool (GAP) of conv2's 6x4x4 map."""
    g = pooled_graph(seed=3)
    rng = np.random.default_rng(4)
    ro = Layer("readout", "readout", (rng.integers(-40, 41, (5, 6)) * 2).astype(np.int64), rng.integers(-9, 10, 5),
               (6, 4, 4), (5,), in_pool=4, decay=g.decay if leak else 0)
    g.layers = [g.layers[0], g.layers[1], ro]
    return g


@pytest.mark.parametrize("leak", [False, True])
def test_pooled_readout_gap_equals_folded(leak):
    """GAP as a 4x4 sum pool in front of the readout (VGG-11's GAP-FC), non-leaking and leaking (SAF-F)."""
    g = _gap_graph(leak)
    f = unpool_graph(g)
    assert f.layers[-1].weight.shape == (5, 96)
    xq = pooled_inputs(g, 16)
    runs = [run_saf_int(g, xq), run_emulator(g, xq), run_onnx(build_onnx_model(g).SerializeToString(), g, xq),
            run_saf_int(f, xq), run_emulator(f, xq)]
    for r in runs[1:]:
        _same(runs[0], r)
    assert len(set(map(tuple, runs[0].readout.tolist()))) > 1
    ref, _, _ = reference_run(f, xq[0])
    if not leak:
        assert np.array_equal(ref, runs[0].readout[0])


def test_demo_network_pooled_equals_folded_on_digits():
    folded, pooled = _demo_graphs()
    assert pooled.layers[2].in_pool == 2 and pooled.layers[2].weight.shape == (128, 512)
    assert folded.layers[2].weight.shape == (128, 2048)
    xq = _digits(120)
    a, b = run_saf_int(folded, xq), run_emulator(pooled, xq)
    c = run_onnx(build_onnx_model(pooled).SerializeToString(), pooled, xq)
    _same(a, b)
    _same(a, c)


def test_wrong_pool_window_is_caught(monkeypatch):
    """Fault: the emulator's pool window shifted by one pixel (or pooling skipped: the first k x k
    entry only). Compared with saf-int on the correct graph, the comparison reports mismatches."""
    g = pooled_graph()
    xq = pooled_inputs(g, 24)
    ref = run_saf_int(g, xq)
    names = [l.name for l in g.spiking_layers]
    assert compare_pair(ref, run_emulator(g, xq), names)["spike_mismatches"] == 0
    real = Layer.pool_input

    def shifted(self, x):
        c, h, w = self.in_shape
        x = np.roll(np.asarray(x).reshape(*np.shape(x)[:-1], c, h, w), 1, axis=-1).reshape(np.shape(x))
        return real(self, x)

    def first_only(self, x):
        k = int(self.in_pool)
        c, h, w = self.in_shape
        x = np.asarray(x).reshape(*np.shape(x)[:-1], c, h // k, k, w // k, k)[..., 0, :, 0]
        return x.reshape(*x.shape[:-3], -1).astype(np.int64)

    for fault in (shifted, first_only):          # the step-major schedule pools through Layer.pool_input
        monkeypatch.setattr(Layer, "pool_input", fault)
        bad = emulate(g, xq, layer_schedule=False)
        monkeypatch.setattr(Layer, "pool_input", real)
        rep = compare_pair(ref, bad, names)
        assert rep["spike_mismatches"] > 0 and rep["first"]["layer"] == "conv2", fault.__name__
    # the layer-major schedule reads the pooled input through weights repeated over each block
    import saf.deploy.backends.emulator_layers as emulator_layers
    real_unpooled = emulator_layers.unpooled

    def one_tap(layer):
        w, s, p = real_unpooled(layer)
        k = int(layer.in_pool)
        if k > 1 and layer.kind == "conv":
            w = w.copy()
            w[..., 1::k, :] = 0                     # one row of every k x k block dropped
        return w, s, p

    monkeypatch.setattr(emulator_layers, "unpooled", one_tap)
    rep = compare_pair(ref, emulate(g, xq), names)
    assert rep["spike_mismatches"] > 0 and rep["first"]["layer"] == "conv2"


def test_lava_schedule_without_the_pool_step_is_caught(monkeypatch):
    """Fault: the schedule forgets the pool stage's step of delay (offsets l + 2): Lava then reads the
    pooled layers one step early and the comparison with the emulator fails."""
    import saf.deploy.lava.graph as lg
    from saf.deploy.lava.backend import run_lava

    g = pooled_graph()
    xq = pooled_inputs(g, 3)
    monkeypatch.setattr(lg, "layer_offsets", lambda graph: [i + 2 for i in range(len(graph.layers))])
    rep = compare_pair(run_emulator(g, xq), run_lava(g, xq), [l.name for l in g.spiking_layers])
    assert rep["layers"][0]["mismatches"] == 0 and rep["spike_mismatches"] > 0
    assert rep["first"]["layer"] == "conv2"


def test_pooled_graph_on_lava_equals_emulator():
    from saf.deploy.lava.backend import run_lava
    from saf.deploy.lava.graph import make_schedule

    g = pooled_graph()
    assert make_schedule(g, 1).offsets == [2, 4, 6, 7]           # one more step per sum-pool stage
    xq = pooled_inputs(g, 3)
    _same(run_emulator(g, xq), run_lava(g, xq))
    g = _gap_graph(leak=True)                                   # a pool stage in front of the readout
    assert make_schedule(g, 1).offsets == [2, 4, 6]
    _same(run_emulator(g, xq), run_lava(g, xq))
    # feedback fc3 -> conv2 across fc3's pool stage: the period covers the extra step (6 - 4 + 1)
    g = pooled_graph()
    w = (np.random.default_rng(7).integers(-30, 31, (96, 12)) * 2).astype(np.int64)
    g.feedback = [Feedback(src=2, dst=1, kind="dense", weight=w)]
    sched = make_schedule(g, 1)
    assert sched.period == 3 and sched.offsets == [2, 4, 6, 7]
    a, b = run_emulator(g, xq), run_lava(g, xq)
    _same(a, b)
    assert not np.array_equal(a.spikes[1], run_emulator(pooled_graph(), xq).spikes[1])   # the edge matters


def test_pooled_graph_on_lava_stock_runs_the_folded_form():
    """Lava has no stock process sending k x k counts: lava (Lava's stock models) runs the folded form (unpool_graph)
    with stock Dense/Conv/LIFReset, and its outputs equal the emulator's on the pooled graph."""
    from saf.deploy.lava.stock import run_lava_stock

    g = pooled_graph()
    xq = pooled_inputs(g, 2)
    _same(run_emulator(g, xq), run_lava_stock(g, xq))


def test_bundle_round_trip_keeps_the_pool(tmp_path):
    g = pooled_graph()
    write_bundle(g, tmp_path / "b")
    m = read_manifest(tmp_path / "b")
    assert [l.get("in_pool", 1) for l in m["layers"]] == [1, 2, 2, 1]
    h = load_graph(tmp_path / "b")
    assert [l.in_pool for l in h.layers] == [1, 2, 2, 1]
    xq = pooled_inputs(g, 8)
    _same(run_emulator(g, xq), run_emulator(h, xq))


def _vgg_graph():
    torch.manual_seed(0)
    net = SpikingNet(with_neuron(load_spec("vgg11-cifar"))).double()
    layers, fb = fold_network(net)
    g, _ = quantize(layers, fb, T=6, lam=0.5, theta=1.0, target=get_target("loihi2"), input_scale=64,
                    input_bits=8, input_signed=True, input_exact=False)
    return g, {fl.name: fl.pool for fl in layers if fl.pool > 1}


def test_vgg11_fits_one_loihi2_chip_with_sum_pools():
    g, pools = _vgg_graph()
    assert pools == {"conv3": 2, "conv5": 2, "conv7": 2, "readout": 4}
    t = get_target("loihi2")
    before, _ = check_resources(g, t)
    pooled, choice = choose_pools(g, pools, t, "auto")
    after, _ = check_resources(pooled, t)
    assert choice.pooled == pools
    assert before.cores_used == 218 and before.chips_used == 2
    assert after.fits and after.cores_used == 104 and after.chips_used == 1          # README
    mem = lambda r: sum(l.memory_bytes_per_core * l.cores for l in r.layers)  # noqa: E731
    assert (mem(before), mem(after)) == (33_341_408, 14_492_816)                      # README
    assert [l.name for l in after.layers if l.kind == "sumpool"] == [f"{n}.pool" for n in pools]
    # the folded layers' synapses (k^2 wider) vs pooled: conv7's kernel is 6x6 folded, 3x3 pooled
    assert g.layers[6].weight.shape[2:] == (6, 6) and pooled.layers[6].weight.shape[2:] == (3, 3)
    # Loihi 1 has no graded spikes: auto keeps every pool folded, "on" is refused
    l1 = get_target("loihi1")
    same, c1 = choose_pools(g, pools, l1, "auto")
    assert same is g and not c1.pooled and all("graded" in r for r in c1.reasons.values())
    with pytest.raises(SumPoolError, match="binary spikes"):
        choose_pools(g, pools, l1, "on")
    assert choose_pools(g, pools, t, "off")[0] is g


def test_demo_mapping_numbers():
    """The demo net (fc3: AvgPool 2 folded, 2,048 inputs): pooled, fc3 reads 512 inputs; the same 5
    cores (fc3 1 core + its pool stage 1 core, instead of 2), 3.7x less synaptic memory, so auto pools."""
    folded, _ = _demo_graphs()
    t = get_target("loihi2")
    pooled, choice = choose_pools(folded, {"fc3": 2}, t, "auto")
    a, b = check_resources(folded, t)[0], check_resources(pooled, t)[0]
    assert (a.cores_used, b.cores_used) == (5, 5) and choice.pooled == {"fc3": 2}
    rows = {r["layer"]: r for r in pool_comparison(a, b)}
    assert (rows["fc3"]["memory_before"], rows["fc3"]["memory_after"]) == (295_936, 80_384)
    assert choice.costs == {"folded": [0, 5, 329_640], "chosen": [0, 5, 114_088]}
    assert a.layer("fc3").input_axons_per_core == 2048 and b.layer("fc3").input_axons_per_core == 512
    # ONNX: fewer multiply-adds, so auto pools there too
    _, oc = choose_pools(folded, {"fc3": 2}, get_target("onnx"), "auto")
    assert oc.pooled == {"fc3": 2} and oc.costs["chosen"][0] < oc.costs["folded"][0]


def _cli(capsys, *args):
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_export_cli_reports_memory_before_and_after(tmp_path, capsys):
    out = tmp_path / "b"
    rc, text, err = _cli(capsys, "export", str(GOLDEN_CKPT), "--target", "loihi", "--out", str(out),
                         "--input-scale", "16", "--input-bits", "5", "--sum-pool", "on")
    assert rc == 0, err
    assert "sum pool (on): fc3 2x2" in text and "memory folded" in text and "fc3.pool" in text
    m = read_manifest(out)
    rows = {r["layer"]: r for r in m["sum_pool"]["memory_per_layer"]}
    assert rows["fc3"]["pool_stage"] and rows["fc3"]["memory_after"] < rows["fc3"]["memory_before"]
    assert m["certificate"]["exact"] and m["layers"][2]["in_pool"] == 2
    g = load_graph(out)
    xq = _digits(40)
    r = run_onnx(out / "model.onnx", g, xq)
    _same(run_saf_int(unpool_graph(g), xq), r)
    rc, _, err = _cli(capsys, "export", str(GOLDEN_CKPT), "--target", "loihi1", "--out", str(tmp_path / "c"),
                      "--input-scale", "16", "--input-bits", "5", "--sum-pool", "on")
    assert rc == 2 and "binary spikes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_run_stats_count_the_pool_stage():
    """saf run's activity: through the stage, one op per conv2 spike (its ones synapse) and 128 per
    non-zero count into fc3, instead of 128 per conv2 spike folded."""
    from saf.deploy.stats import run_stats

    folded, pooled = _demo_graphs()
    xq = _digits(30)
    labels = np.zeros(30, np.int64)
    rf, rp = run_emulator(folded, xq), run_emulator(pooled, xq)
    sf, sp = run_stats(folded, rf, xq, labels), run_stats(pooled, rp, xq, labels)
    spikes2 = float(rf.spikes[1].sum()) / 30
    nonzero = float((pooled.layers[2].pool_input(rp.spikes[1]) != 0).sum()) / 30
    act_f = {a[0]: a for a in sf["activity"]}
    act_p = {a[0]: a for a in sp["activity"]}
    assert act_f["fc3"][2] == pytest.approx(spikes2 * 128) and "fc3.pool" not in act_f
    assert act_p["fc3.pool"] == ("fc3.pool", 512, pytest.approx(spikes2), pytest.approx(nonzero))
    assert act_p["fc3"][2] == pytest.approx(nonzero * 128) and nonzero < spikes2
    assert sp["synops_per_inference"] == pytest.approx(sf["synops_per_inference"] - spikes2 * 128
                                                        + spikes2 + nonzero * 128)
