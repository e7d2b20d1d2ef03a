"""NIR graphs that end in a spiking node (issue 29, item 1): snnTorch tutorial 5's classifier shape
(Linear -> Leaky -> Linear -> Leaky, prediction spk_rec.sum(0).argmax(1)) trained briefly on digits with snnTorch
and exported with its own export_to_nir; a hand-built IF-ending graph (nir package) whose two output neurons tie
on every sample; a CubaLIF-ending one. `saf import` reads them as the layer plus a spike-count readout
(export/nir/spiking_out.py), or its membrane without threshold (--readout membrane)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import nir  # noqa: E402

from saf_test_helpers import nir_nets as N
from saf.deploy.main import main  # noqa: E402

T = N.T
BETA = 0.5


def tutorial_net(seed: int = 0) -> nn.Sequential:
    """Tutorial 5's shape on digits: Linear(64, 32) -> Leaky -> Linear(32, 10) -> Leaky (output=True), snnTorch's
    default subtract reset, per-neuron beta and threshold (a scalar beta fails export_to_nir's type inference)."""
    import snntorch as snn

    torch.manual_seed(seed)

    def leaky(n, output=False):
        return snn.Leaky(beta=torch.full((n,), BETA), threshold=torch.ones(n), init_hidden=True, output=output)
    return nn.Sequential(nn.Linear(64, 32), leaky(32), nn.Linear(32, 10), leaky(10, output=True))


def run(net: nn.Sequential, x: torch.Tensor) -> tuple:
    """(spike counts [B, 10], membranes [T][B, 10], spikes [layer][B, T, n]): snnTorch's modules step by step, the
    spikes cast to x's dtype (its surrogates return float32 0/1, exact in float64), so net.double() runs in float64."""
    from snntorch import utils

    utils.reset(net)
    x = x.flatten(1)
    counts, mems, spk = 0, [], [[], []]
    for _ in range(T):
        s1 = net[1](net[0](x)).to(x.dtype)
        s2, mem = net[3](net[2](s1))
        s2 = s2.to(x.dtype)
        counts, mems = counts + s2, mems + [mem]
        spk[0].append(s1.detach())
        spk[1].append(s2.detach())
    return counts, mems, [torch.stack(s, 1) for s in spk]


def as_double(net: nn.Sequential) -> nn.Sequential:
    """A float64 copy (the module fixture's net stays float32 for the tests that run it as trained)."""
    twin = tutorial_net()
    twin.load_state_dict(net.state_dict())
    return twin.double()


def train(net: nn.Sequential, data, epochs: int = 8) -> nn.Sequential:
    """Tutorial 5's loss (cross-entropy on the output membrane, summed over the steps), Adam lr 5e-3."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    x, y = data.x_train.float(), data.y_train
    threads = torch.get_num_threads()
    torch.set_num_threads(N.TRAIN_THREADS)
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), 64):
                idx = perm[i:i + 64]
                _, mems, _ = run(net, x[idx])
                loss = sum(nn.functional.cross_entropy(m, y[idx]) for m in mems)
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net


@pytest.fixture(scope="module")
def data():
    return N.digits()


@pytest.fixture(scope="module")
def tutorial(data, tmp_path_factory):
    """(snnTorch net, .nir file, run imported with snnTorch's reset, import's stdout)."""
    import io
    from contextlib import redirect_stdout

    from snntorch.export_nir import export_to_nir

    root = tmp_path_factory.mktemp("nir-spiking-output")
    net = train(tutorial_net(), data)
    with torch.no_grad():
        graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    path = root / "tutorial.nir"
    nir.write(str(path), graph)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["import", str(path), "--out", str(root / "run"), "--reset", "subtract-undecayed"]) == 0
    return net, path, root / "run", buf.getvalue()


def float_form(run_dir, x: torch.Tensor) -> tuple:
    """(readout [N, classes], spikes per spiking layer [N, T, n]) of an imported run's float LIF form, float64."""
    from saf.train.checkpoint import load_model

    net, spec, _ = load_model(run_dir)
    total, recs = net.double().infer(x.double(), int(spec["T"]), "lif", record=True)
    return total, [torch.stack([r.spikes[l] for r in recs], 1) for l in range(net.n_spiking)]


def mismatches(a, b) -> list:
    return [int((x.bool() != (y > 0.5)).sum()) for x, y in zip(a, b)]


def test_imported_float_form_equals_snntorchs_spikes_of_every_layer(tutorial, data):
    """Both in float64 (snnTorch's net converted with .double()), so a summation order cannot flip a spike: 0
    mismatching spikes in both layers at every step, and the count readout is snnTorch's spk_rec.sum(0)."""
    net, _, run_dir, out = tutorial
    assert "--readout count (the graph ends in spiking node" in out and "readout count" in out
    x = data.x_test
    ref_counts, _, ref_spikes = run(as_double(net), x.double())
    counts, spikes = float_form(run_dir, x)
    assert all(int(s.sum()) > 500 for s in ref_spikes)               # both layers fire
    assert mismatches(ref_spikes, spikes) == [0, 0]
    assert torch.equal(counts, ref_counts)                          # counts of 0/1 spikes: exact
    acc = float((ref_counts.argmax(1) == data.y_test).float().mean())
    assert acc > 0.85, acc


def test_a_wrong_reset_makes_the_spike_comparison_fail(tutorial, data, tmp_path):
    """The comparison above can fail: saf's own (decayed) subtraction is another neuron."""
    net, path, _, _ = tutorial
    assert main(["import", str(path), "--out", str(tmp_path / "r"), "--reset", "subtract"]) == 0
    _, _, ref_spikes = run(as_double(net), data.x_test.double())
    _, spikes = float_form(tmp_path / "r", data.x_test)
    assert sum(mismatches(ref_spikes, spikes)) > 100


def _deployed(bundle, x, backend: str = "emulator", limit=None):
    from saf.deploy.backends.registry import Bundle, run_backend

    b = Bundle.load(bundle)
    xq = b.graph.quantize_input(x.numpy() if limit is None else x.numpy()[:limit])
    return run_backend(backend, b, xq, record_spikes=False)


def test_deploys_exact_verifies_and_predicts_snntorchs_counts(tutorial, data, tmp_path, capsys):
    """saf export --target loihi: EXACT (beta 0.5); saf verify across saf-int, emulator, ONNX and lava-own: PASS,
    0 mismatching spikes; the deployed prediction equals snnTorch's spk_rec.sum(0).argmax(1) on >= 99 %."""
    net, _, run_dir, _ = tutorial
    bundle = tmp_path / "bundle"
    assert main(["export", str(run_dir), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["certificate"]["exact"] is True
    capsys.readouterr()
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator,onnx,lava-own", "--lava-limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "verify: PASS" in out and out.count(": 0 mismatching spikes") == 6, out
    ref = run(net, data.x_test.float())[0].argmax(1).numpy()
    agree = float((_deployed(bundle, data.x_test).predictions == ref).mean())
    with capsys.disabled():
        print(f"deployed vs snnTorch (tutorial shape, count readout): {agree:.4f} same prediction")
    assert agree >= 0.99, agree


def test_verify_catches_a_readout_that_misses_the_last_steps_spikes(tutorial, tmp_path, capsys):
    """The count readout is compared, not assumed: an emulator whose readout reads the output spikes one step
    late (the last step's never counted) fails verify, on the readout."""
    _, _, run_dir, _ = tutorial
    bundle = tmp_path / "bundle"
    assert main(["export", str(run_dir), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator", "--inject-fault", "readout-delay"]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "FAIL emulator vs emulator[readout-delay]" in l)
    assert "0 mismatching spikes" in line and "readout 0 differ" not in line, line


def test_export_to_nir_ends_in_the_spiking_node_and_round_trips(tutorial, tmp_path, capsys):
    """saf export --target nir writes the graph ending in the output LIF again (no readout synapse); importing it
    gives the same run: same spec layers and readout, the same weights, nothing assumed about the readout."""
    from saf.export.nir.graph import chain, kind, read_graph
    from saf.train.checkpoint import load_model

    _, _, run_dir, _ = tutorial
    back = tmp_path / "back.nir"
    assert main(["export", str(run_dir), "--target", "nir", "--out", str(back)]) == 0
    ch = chain(back, read_graph(back))
    assert kind(ch.nodes[-2][1]) == "LIF" and kind(ch.nodes[-3][1]) == "Affine"
    capsys.readouterr()
    assert main(["import", str(back), "--out", str(tmp_path / "again")]) == 0
    assert "--readout" not in capsys.readouterr().out
    a, sa, _ = load_model(run_dir)
    b, sb, _ = load_model(tmp_path / "again")
    assert sa["layers"] == sb["layers"] and a.readout_kind == b.readout_kind and a.readout_kind.name == "count"
    da, db = a.state_dict(), b.state_dict()
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)


def test_membrane_readout_is_the_last_layers_membrane_without_threshold(tutorial, data, tmp_path, capsys):
    """--readout membrane: one spiking layer, and the readout R = v[T], v[t] = beta v[t-1] + fc2(s1[t]) (snnTorch's
    hidden spikes, computed here in float64): equal up to summation-order rounding; the export verifies."""
    net, path, _, _ = tutorial
    run_dir = tmp_path / "m"
    assert main(["import", str(path), "--out", str(run_dir), "--reset", "subtract-undecayed",
                 "--readout", "membrane"]) == 0
    assert "readout: --readout membrane: the last node" in capsys.readouterr().out
    net = as_double(net)
    _, _, ref_spikes = run(net, data.x_test.double())
    v = 0
    with torch.no_grad():
        for t in range(T):
            v = BETA * v + net[2](ref_spikes[0][:, t])
    R, spikes = float_form(run_dir, data.x_test)
    assert len(spikes) == 1 and mismatches(ref_spikes[:1], spikes) == [0]
    assert float((R - v).abs().max()) <= 1e-9 * float(v.abs().max())
    assert torch.equal(R.argmax(1), v.argmax(1))
    bundle = tmp_path / "mb"
    assert main(["export", str(run_dir), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator,onnx", "--limit", "100"]) == 0


# ------------------------------------------------------------------------------------------ hand-built graphs
def _if(n):
    return nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def tie_graph(last: str = "IF") -> nir.NIRGraph:
    """Input [64] -> Affine(16) -> IF -> Affine(10) -> IF (or CubaLIF) -> Output. Output rows 3 and 7 are the same
    weights, so the two neurons spike alike on every sample; every other row is strongly negative (never fires)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.25, (16, 64)).astype(np.float32)
    w2 = np.full((10, 16), -1.0, np.float32)
    w2[3] = w2[7] = np.abs(rng.normal(0, 0.5, 16)).astype(np.float32)
    if last == "IF":
        out = _if(10)
    else:        # dt 1e-4: tau_syn = 2e-4 (alpha 0.5), w_in = 2 (gain 1); tau_mem = r = inf: no leak, like the IF
        out = nir.CubaLIF(tau_syn=np.full(10, 2e-4), tau_mem=np.full(10, np.inf), r=np.full(10, np.inf),
                          w_in=np.full(10, 2.0), v_leak=np.zeros(10), v_threshold=np.ones(10), v_reset=np.zeros(10))
    nodes = {"in": nir.Input(input_type={"input": np.array([64])}), "fc1": nir.Affine(weight=w1, bias=np.zeros(16)),
             "n1": _if(16), "fc2": nir.Affine(weight=w2, bias=np.zeros(10)), "n2": out,
             "out": nir.Output(output_type={"output": np.array([10])})}
    edges = [("in", "fc1"), ("fc1", "n1"), ("n1", "fc2"), ("fc2", "n2"), ("n2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_if_graph_with_tied_outputs_predicts_the_lowest_index_on_every_backend(data, tmp_path, capsys):
    """An IF-ending graph imports (count readout), exports EXACT and verifies with 0 mismatches; its output neurons
    3 and 7 tie on every sample, and every backend (and snnTorch's torch.argmax on the same counts) predicts 3.
    The tie is real: the highest-index rule would predict 7 on those samples (so a backend using it fails here)."""
    src = tmp_path / "if.nir"
    nir.write(str(src), tie_graph("IF"))
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "--readout count" in out and "IF read as" in out
    bundle = tmp_path / "bundle"
    assert main(["export", str(tmp_path / "run"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(bundle)]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["certificate"]["exact"] is True
    capsys.readouterr()
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator,onnx,lava", "--lava-limit", "10"]) == 0
    assert "verify: PASS" in capsys.readouterr().out
    for backend in ("saf-int", "emulator", "onnx", "lava", "lif-float"):
        r = _deployed(bundle, data.x_test, backend, limit=10 if backend == "lava" else None)
        ro = np.asarray(r.readout)
        tied = (ro[:, 3] == ro[:, 7]) & (ro[:, 3] > np.delete(ro, [3, 7], axis=1).max(1))
        assert tied.sum() >= 0.9 * len(ro), (backend, int(tied.sum()))
        assert (r.predictions[tied] == 3).all(), backend
        assert (ro.shape[1] - 1 - ro[:, ::-1].argmax(1))[tied].tolist() == [7] * int(tied.sum())   # highest index
        assert (torch.from_numpy(ro[tied].astype(np.float64)).argmax(1) == 3).all()              # torch's rule


def test_cubalif_ending_graph_imports_with_its_current_and_verifies(data, tmp_path, capsys):
    """A graph ending in a spiking CubaLIF (a current decaying by 0.5) keeps its current in the counted layer;
    it exports EXACT (the current_decay rows) and verifies with 0 mismatches."""
    src = tmp_path / "cuba.nir"
    nir.write(str(src), tie_graph("CubaLIF"))
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 0
    assert "--readout count (the graph ends in spiking node 'n2' (CubaLIF)" in capsys.readouterr().out
    from saf.train.checkpoint import load_model
    assert load_model(tmp_path / "run")[1]["layers"][-1].get("alpha") == 0.5
    bundle = tmp_path / "bundle"
    assert main(["export", str(tmp_path / "run"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(bundle)]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["certificate"]["exact"] is True
    assert main(["verify", str(bundle), "--backends", "emulator,onnx,lava-own", "--lava-limit", "5"]) == 0
    assert (_deployed(bundle, data.x_test).readout.max(1) > 0).mean() > 0.9        # the output layer does fire


@pytest.mark.parametrize("case", ["membrane of a one-layer graph", "membrane of a CubaLIF current",
                                  "readout flag on a synapse readout"])
def test_readout_refusals_are_one_line_exit_2_and_write_nothing(case, tmp_path, capsys):
    if case == "membrane of a one-layer graph":
        g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([64])}),
                                "fc": nir.Affine(weight=np.ones((10, 64)), bias=np.zeros(10)), "n": _if(10),
                                "out": nir.Output(output_type={"output": np.array([10])})},
                         edges=[("in", "fc"), ("fc", "n"), ("n", "out")])
        flags, words = ["--readout", "membrane"], ["'n'", "no spiking layer", "--readout count"]
    elif case == "membrane of a CubaLIF current":
        g, flags, words = tie_graph("CubaLIF"), ["--readout", "membrane"], ["'n2'", "synaptic current"]
    else:
        t = tie_graph("IF")
        g = nir.NIRGraph(nodes=dict(t.nodes, ro=nir.Affine(weight=np.eye(10), bias=np.zeros(10))),
                         edges=[e for e in t.edges if e != ("n2", "out")] + [("n2", "ro"), ("ro", "out")])
        flags, words = ["--readout", "count"], ["--readout count", "'ro'", "not a spiking node"]
    src = tmp_path / "m.nir"
    nir.write(str(src), g)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["import", str(src), "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("saf import: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
