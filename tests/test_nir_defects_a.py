"""Defects 1-6 of issue 29's review of export/nir/ (each test failed on the code before its fix):
1. a run with a synaptic current written as NIR CubaLIF (not LIF) and read back as the same run;
2. DSR and FP imports refuse recurrent edges and a DSR CubaLIF's current, FP files the flags they ignored;
3. a CubaLI readout with tau_syn = dt (no current state) imports as LI, exports and verifies;
4. float32 decays within rounding of the 12-bit grid k/4096 read back as k/4096 (alpha = beta = 0.75);
5. saf verify's saf-float on a synaptic net: one line, exit 2 (not an internal error);
6. the --approximate agreement table of an imported zero-reset net runs lif-float (it was "not measured").
Nets: snnTorch's, untrained (seeded), exported with snnTorch's export_to_nir, or NIR graphs written with nir."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nir  # noqa: E402

from saf_test_helpers import nir_nets as N
from saf_test_helpers.bundle_diff import bundle_differences
from saf.deploy.main import main  # noqa: E402

DT = 1e-4


def _one_line_refusal(capsys, argv, *words) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and all(w in err for w in words), err
    return err


def _layers(run):
    from saf.train.checkpoint import load_model
    net, spec, _ = load_model(run)
    return net, spec


@pytest.fixture(scope="module")
def synaptic_nir(tmp_path_factory):
    """snnTorch Synaptic net (alpha = beta = 1/2, no biases in front of the Synaptic neurons) as NIR."""
    path = tmp_path_factory.mktemp("syn") / "syn.nir"
    N.export_snntorch(N.synaptic_net("subtract", alpha=0.5, beta=0.5, bias=False), path)
    return path


# ---------------------------------------------------------------- 1. CubaLIF out, the same run back in
def test_synaptic_run_exports_as_cubalif_and_imports_as_the_same_run(synaptic_nir, tmp_path):
    """saf import (run A) -> saf export --target nir: CubaLIF nodes with tau_syn = dt / (1 - alpha) -> saf import
    (run B): the same spec layers (alpha included), the same float tensors, the same Loihi bundle. Fault: the file
    with another tau_syn (alpha 1/4) gives another spec (the comparison is not vacuous)."""
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    assert main(["import", str(synaptic_nir), "--out", str(a), "--reset", "subtract-undecayed"]) == 0
    path = tmp_path / "back.nir"
    assert main(["export", str(a), "--target", "nir", "--out", str(path)]) == 0
    graph = nir.read(str(path))
    cuba = [n for n in graph.nodes.values() if type(n).__name__ == "CubaLIF"]
    assert len(cuba) == 2 and not any(type(n).__name__ in ("LIF", "IF") for n in graph.nodes.values())
    assert all(np.allclose(n.tau_syn, 2 * DT) and np.allclose(n.w_in, 2.0) for n in cuba)
    assert main(["import", str(path), "--out", str(b)]) == 0
    (na, sa), (nb, sb) = _layers(a), _layers(b)
    assert [l.get("alpha") for l in sa["layers"] if "out" in l] == [0.5, 0.5]
    assert sb["layers"] == sa["layers"] and sb["neuron"] == sa["neuron"] and sb["T"] == sa["T"]
    assert all(torch.equal(v, nb.state_dict()[k]) for k, v in na.state_dict().items())
    ba, bb = tmp_path / "bundle-a", tmp_path / "bundle-b"
    for run, out in ((a, ba), (b, bb)):
        assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(out)]) == 0
    assert bundle_differences(ba, bb) == []
    for n in cuba:                                       # fault: alpha 1/4 in the file
        n.tau_syn = np.full_like(n.tau_syn, DT / 0.75)
        n.w_in = np.full_like(n.w_in, 1 / 0.75)
    nir.write(str(tmp_path / "bad.nir"), graph)
    assert main(["import", str(tmp_path / "bad.nir"), "--out", str(tmp_path / "run-bad")]) == 0
    s_bad = _layers(tmp_path / "run-bad")[1]
    assert [l.get("alpha") for l in s_bad["layers"] if "out" in l] == [0.25, 0.25] and s_bad["layers"] != sa["layers"]


# ---------------------------------------------------------------- 2. DSR / FP: refuse what they would ignore
@pytest.fixture(scope="module")
def dsr_nir(tmp_path_factory):
    """A DSR run (mlp-digits, LIF lam 1/2, firing at V/2, spike-count readout), 1 short epoch, as NIR."""
    root = tmp_path_factory.mktemp("dsr")
    assert main(["train", "--model", "mlp-digits", "--method", "dsr", "--lam", "0.5", "--dsr-alpha", "0.5",
                 "--dsr-readout", "spike", "--epochs", "1", "--limit-train", "64", "--batch-size", "32", "--T", "6",
                 "--no-progress", "--out", str(root / "trained")]) == 0
    path = root / "dsr.nir"
    assert main(["export", str(root / "trained" / "best.safetensors"), "--target", "nir", "--out", str(path)]) == 0
    return path


def _with_recurrent(path, neuron: str, out, linear: bool = False):
    """The graph of `path` with one more synapse from `neuron` back into it (a cycle: snnTorch RLeaky's shape)."""
    g = nir.read(str(path))
    n = int(np.asarray(g.nodes[neuron].v_threshold).size)
    w = np.full((n, n), 0.01)
    g.nodes["rec"] = nir.Linear(weight=w) if linear else nir.Affine(weight=w, bias=np.zeros(n))
    g.edges += [(neuron, "rec"), ("rec", neuron)]
    nir.write(str(out), g)
    return out


def test_dsr_import_refuses_a_recurrent_edge_and_a_synaptic_current(dsr_nir, tmp_path, capsys):
    assert main(["import", str(dsr_nir), "--out", str(tmp_path / "ok")]) == 0          # the file as written
    bad = _with_recurrent(dsr_nir, "layer0_neuron", tmp_path / "rec.nir")
    _one_line_refusal(capsys, ["import", str(bad), "--out", str(tmp_path / "r1")], "rec.nir", "'rec'", "DSR")
    g = nir.read(str(dsr_nir))
    lif = g.nodes["layer0_neuron"]
    n = lif.v_threshold.shape
    g.nodes["layer0_neuron"] = nir.CubaLIF(tau_syn=np.full(n, 2 * DT), w_in=np.full(n, 2.0), tau_mem=lif.tau, r=lif.r,
                                           v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset,
                                           metadata=lif.metadata)
    nir.write(str(tmp_path / "cuba.nir"), g)
    _one_line_refusal(capsys, ["import", str(tmp_path / "cuba.nir"), "--out", str(tmp_path / "r2")],
                      "'layer0_neuron'", "synaptic current", "DSR")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


@pytest.fixture(scope="module")
def fp_nir(tmp_path_factory):
    """An FP run (fp-iris, 1 epoch) as NIR (CubaLIF, export/nir/fp.py)."""
    root = tmp_path_factory.mktemp("fp")
    assert main(["train", "--method", "fp", "--model", "fp-iris", "--epochs", "1", "--no-progress",
                 "--out", str(root / "trained")]) == 0
    path = root / "fp.nir"
    assert main(["export", str(root / "trained"), "--target", "nir", "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("flag", [["--dt", "0.5"], ["--T", "9"], ["--reset", "zero"], ["--compare", "gt"],
                                  ["--input-shape", "1,2,2"], ["--encoder", "rate"], ["--dataset", "iris"]],
                         ids=lambda f: f[0])
def test_fp_import_refuses_the_flags_it_cannot_honour(fp_nir, flag, tmp_path, capsys):
    _one_line_refusal(capsys, ["import", str(fp_nir), "--out", str(tmp_path / "r"), *flag], flag[0], "FP")
    assert not (tmp_path / "r").exists()


def test_fp_import_refuses_a_recurrent_edge(fp_nir, tmp_path, capsys):
    assert main(["import", str(fp_nir), "--out", str(tmp_path / "ok")]) == 0          # the file as written
    bad = _with_recurrent(fp_nir, "layer0_neuron", tmp_path / "rec.nir", linear=True)
    _one_line_refusal(capsys, ["import", str(bad), "--out", str(tmp_path / "r")], "rec.nir", "'rec'", "FP")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 3. CubaLI readout, tau_syn = dt
def _cubali_net(path, tau_syn: float, lam_ro: float) -> None:
    """Input [64] -> Affine(64, 24) -> LIF (lam 1/2) -> Affine(24, 10) -> CubaLI(tau_syn, lam_ro) -> Output, float32
    parameters written as snnTorch writes them (w_in = tau_syn / dt, r = tau_mem / dt: gains 1)."""
    rng = np.random.default_rng(0)
    f = lambda n, v: np.full(n, v, np.float32)     # noqa: E731
    tau = np.float32(DT) / (1 - f(24, 0.5))
    tau_ro = np.float32(DT) / (1 - f(10, lam_ro)) if lam_ro < 1 else f(10, np.inf)
    ts = np.float32(tau_syn) * f(10, 1.0)
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Affine(weight=rng.normal(0, 0.4, (24, 64)).astype(np.float32), bias=f(24, 0.1)),
             "lif1": nir.LIF(tau=tau, r=tau / np.float32(DT), v_leak=f(24, 0), v_threshold=f(24, 1), v_reset=f(24, 0)),
             "fc2": nir.Affine(weight=rng.normal(0, 0.5, (10, 24)).astype(np.float32), bias=f(10, 0)),
             "ro": nir.CubaLI(tau_syn=ts, w_in=ts / np.float32(DT), tau_mem=tau_ro,
                              r=tau_ro / np.float32(DT) if lam_ro < 1 else f(10, np.inf), v_leak=f(10, 0)),
             "output": nir.Output(output_type={"output": np.array([10])})}
    order = list(nodes)
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:]))))


@pytest.mark.parametrize("lam_ro,readout", [(0.5, "leaky-sum"), (1.0, "sum")])
def test_cubali_readout_with_tau_syn_dt_imports_exports_and_verifies(lam_ro, readout, tmp_path, capsys):
    """tau_syn = dt: the current lasts one step, I[t] = W s[t] + b, so the readout is LI (leaking with tau_mem) or
    a sum (tau_mem = inf), gain 1: the readout weights are the file's. Exported to Loihi and verified (saf-int vs
    ONNX, 0 mismatches). A current that outlives its step (tau_syn = 2 dt) is still refused, naming the node."""
    from saf.train.readout import READOUTS
    path, run = tmp_path / "cubali.nir", tmp_path / "run"
    _cubali_net(path, DT, lam_ro)
    assert main(["import", str(path), "--out", str(run)]) == 0
    net, spec = _layers(run)
    assert net.readout_kind is READOUTS[readout] and spec["neuron"]["lam"] == 0.5
    g = nir.read(str(path))
    assert np.array_equal(net.readout.effective_weight().detach().numpy(), g.nodes["fc2"].weight)
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    assert main(["verify", str(bundle), "--backends", "saf-int,onnx", "--limit", "60", "--no-progress"]) == 0
    rep = json.loads((tmp_path / "bundle-verify" / "verify.json").read_text())
    assert rep["certificate"]["exact"]
    _cubali_net(tmp_path / "decaying.nir", 2 * DT, lam_ro)
    _one_line_refusal(capsys, ["import", str(tmp_path / "decaying.nir"), "--out", str(tmp_path / "r")],
                      "'ro'", "CubaLI", "tau_syn = dt")


# ---------------------------------------------------------------- 4. float32 decays on the 12-bit grid
def test_snap_decay_takes_k_over_4096_within_float32_rounding_only():
    from saf.export.nir.neurons import snap_decay
    eps = float(np.finfo(np.float32).eps)
    for k in (1, 1000, 2048, 3072, 3686, 4000, 4095):
        a = k / 4096
        x = 1 - DT / float(np.float32(DT) / (1 - np.float32(a)))     # snnTorch: tau = dt / (1 - a), float32
        assert snap_decay(x) == a, (k, x)
    assert snap_decay(1 - DT / float(np.float32(DT) / (1 - np.float32(0.75)))) == 0.75 != 0.7499999936844686
    for x in (0.75 + 4 * eps, 0.75 - 1e-6, 0.9, 0.95, 0.3):        # genuinely other values: kept
        assert snap_decay(x) == x


def test_float32_alpha_and_beta_0_75_read_back_exactly_and_deploy(tmp_path):
    """snnTorch Synaptic alpha = beta = 0.75 (tau = dt / 0.25 in float32: 0.7499999937 before): spec alpha and lam
    exactly 0.75; alpha 0.75 with beta 1/2 exports to Loihi (du 1023: (4095 - du) / 4096 = 0.75), refused before."""
    from saf.export.bundle.store import load_graph
    path, run = tmp_path / "s.nir", tmp_path / "run"
    N.export_snntorch(N.synaptic_net("subtract", alpha=0.75, beta=0.75, bias=False), path)
    assert main(["import", str(path), "--out", str(run)]) == 0
    _, spec = _layers(run)
    assert spec["neuron"]["lam"] == 0.75 and [l.get("alpha") for l in spec["layers"] if "out" in l] == [0.75, 0.75]
    N.export_snntorch(N.synaptic_net("subtract", alpha=0.75, beta=0.5, bias=False), path)
    assert main(["import", str(path), "--out", str(run), "--force", "--T", "4"]) == 0     # exact: F >= 2 (T - 1)
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    assert [int(l.du) for l in load_graph(bundle).spiking_layers] == [1023, 1023]


# ---------------------------------------------------------------- 5. saf-float on a synaptic net
def test_saf_float_on_a_synaptic_net_is_one_line_not_an_internal_error(synaptic_nir, tmp_path, capsys):
    """Default modes (subtract, >=) with a synaptic current: the SAF form holds no current. verify --backends
    saf-int,emulator,saf-float refuses in one line naming lif-float (it was 'internal error: StopIteration');
    lif-float runs; the SAF form's own guard names the current."""
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["import", str(synaptic_nir), "--out", str(run), "--reset", "subtract", "--compare", "ge"]) == 0
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    _one_line_refusal(capsys, ["verify", str(bundle), "--backends", "saf-int,emulator,saf-float"],
                      "saf-float", "synaptic current", "lif-float")
    assert main(["verify", str(bundle), "--backends", "saf-int,onnx,lif-float", "--limit", "20", "--no-progress"]) == 0
    net, _ = _layers(run)
    with pytest.raises(ValueError, match="synaptic current"):
        net.infer(torch.zeros(1, 1, 8, 8), 2, "saf")


# ---------------------------------------------------------------- 6. --approximate table: the LIF float form
def test_approximate_table_of_an_imported_zero_reset_net_measures_lif_float(tmp_path):
    """snnTorch Leaky(reset zero) -> saf import (>, zero: no SAF form) -> --approximate bundle (T 16, F 6): the
    table compares the deployed form with lif-float, row by row what onnx vs lif-float gives here; it said 'not
    measured' before. Fault: deployed spikes flipped in conv1 lower conv1's agreement."""
    from saf.deploy.backends.registry import BACKENDS, Bundle, run_backend
    from saf.deploy.verify.inputs import load_inputs
    from saf.deploy.verify import verify
    from saf.deploy.verify.approx import approx_section
    path, run, out = tmp_path / "z.nir", tmp_path / "run", tmp_path / "bundle"
    N.export_snntorch(N.snntorch_net("zero", beta=0.5), path)
    assert main(["import", str(path), "--out", str(run), "--T", "16"]) == 0
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--approximate",
                 "--out", str(out)]) == 0
    b = Bundle.load(out)
    xq, y, _ = load_inputs(b, None, None, 40)
    rep = verify(b, xq, y, ["saf-int", "onnx"])
    a = rep.approximate
    assert a["unavailable"] == "" and a["float_form"] == "lif-float" and a["deployed"] == "onnx", a
    dep, fl = run_backend("onnx", b, xq), run_backend("lif-float", b, xq)
    assert sum(int(s.sum()) for s in fl.spikes) > 1000
    for row, d, f in zip(a["layers"], dep.spikes, fl.spikes):
        assert row["agreement"] == pytest.approx(float((d == f).mean()))
    bad = dep.spikes[0].copy()
    bad[:, :, :50] = ~bad[:, :, :50]
    faulty = type(dep)(**{**vars(dep), "spikes": [bad] + list(dep.spikes[1:])})
    worse = approx_section(b, xq, y, {"onnx": faulty}, [BACKENDS["onnx"]])
    assert worse["float_form"] == "lif-float" and worse["layers"][0]["agreement"] < a["layers"][0]["agreement"]


def test_synaptic_layer_without_leak_round_trips_with_infinite_tau_mem(tmp_path):
    """lam = 1 with a current (snnTorch Synaptic beta = 1): CubaLIF with tau_mem = r = inf (it was IF), read back as
    lam 1 with alpha 1/2; the same spec and tensors."""
    src, a, b, path = tmp_path / "s.nir", tmp_path / "run-a", tmp_path / "run-b", tmp_path / "back.nir"
    N.export_snntorch(N.synaptic_net("subtract", alpha=0.5, beta=1.0, bias=False), src)
    assert main(["import", str(src), "--out", str(a), "--reset", "subtract-undecayed"]) == 0
    assert main(["export", str(a), "--target", "nir", "--out", str(path)]) == 0
    n = nir.read(str(path)).nodes["layer0_neuron"]
    assert type(n).__name__ == "CubaLIF" and np.isinf(n.tau_mem).all() and np.isinf(n.r).all()
    assert main(["import", str(path), "--out", str(b)]) == 0
    (na, sa), (nb, sb) = _layers(a), _layers(b)
    assert sb["neuron"]["lam"] == 1.0 and [l.get("alpha") for l in sb["layers"] if "out" in l] == [0.5, 0.5]
    assert sb["layers"] == sa["layers"] and all(torch.equal(v, nb.state_dict()[k]) for k, v in na.state_dict().items())
