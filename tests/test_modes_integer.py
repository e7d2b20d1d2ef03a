"""Per-layer reset / compare modes (core/neuron_modes.py) through the integer forms and the proof.

Every mode x compare, on dense, conv and recurrent (src == dst) layers: saf-int (the accumulated-charge
formulation), the emulator (both schedules), ONNX (onnxruntime) each equal the literal spec oracle
(tests/saf_test_helpers/reference_lif.py) spike for spike, potential for potential where reported, and readout. The modes
are shown to matter (the oracle with the default modes differs), a constructed threshold tie separates
'>' from '>=', and verify catches a backend run with a layer's reset or compare swapped."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch
from saf_test_helpers.graphs import IDS, certified_bundle, tie_graph, with_modes

from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.deploy.backends.registry import BACKENDS, STOCK_MODES  # noqa: E402
from saf.deploy.backends.spec import BackendSpec, Form, mode_refusal  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.export.bundle.store import BundleError, load_graph  # noqa: E402
from saf.export.ir import Convention, Graph  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.certificate import certify, convention_check  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402
from saf.core.neuron_modes import ALL_MODES, NeuronMode  # noqa: E402

def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def _onnx(g: Graph, x):
    return run_onnx(build_onnx_model(g).SerializeToString(), g, x)


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("mode", ALL_MODES, ids=IDS)
def test_every_integer_form_equals_the_spec_oracle(mode, arch, recurrent):
    g = with_modes(random_graph(arch, T=6, lam=0.5, seed=3), mode, recurrent)
    x = random_inputs(g, 6, seed=1)
    R, S, P = reference_batch(g, x)
    assert all(0.03 < float(s.mean()) < 0.97 for s in S), "the test must exercise spikes and resets"
    if mode.reset != "subtract":                 # a reset changes the network (the test is not vacuous); a
        _, S0, _ = reference_batch(with_modes(g, NeuronMode()), x)   # compare only at ties: the tie test
        assert not _same(S, S0)
    runs = {"saf-int": run_saf_int(g, x, record_potentials=True),
            "emulator": emulate(g, x, record_potentials=True),
            "emulator step-major": emulate(g, x, record_potentials=True, layer_schedule=False),
            "onnx": _onnx(g, x)}
    assert runs["emulator"].info["schedule"] == ("step-major" if recurrent else "layer-major")
    for name, r in runs.items():
        np.testing.assert_array_equal(r.readout, R, err_msg=name)
        for li, (a, b) in enumerate(zip(r.spikes, S)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} spikes, layer {li}")
        if r.potentials is not None:
            for li, (a, b) in enumerate(zip(r.potentials, P)):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} potentials, layer {li}")
    assert runs["saf-int"].info["potentials_exact"]
    assert certify(g).exact, certify(g).format()


@pytest.mark.parametrize("mode", ALL_MODES, ids=IDS)
def test_threshold_tie_fires_only_with_ge_in_every_form(mode):
    g = tie_graph(mode)
    x = np.array([[6], [5], [9]])
    R, S, P = reference_batch(g, x)
    assert P[0][0, 0, 0] == 6 << 6                                     # the tie, constructed
    assert bool(S[0][0, 0, 0]) == (mode.compare == ">=")
    for r in (run_saf_int(g, x), emulate(g, x), emulate(g, x, layer_schedule=False), _onnx(g, x)):
        np.testing.assert_array_equal(r.readout, R)
        assert _same(r.spikes, S)


def test_the_three_resets_differ_on_the_tie_graph():
    """After the same spikes, the three resets leave three different potentials (subtract: 5 + ..., zero: 0,
    subtract-undecayed: the subtraction after the decay), so a swapped reset changes later spikes."""
    x = np.array([[5], [9]])
    outs = {m.reset: reference_batch(tie_graph(m, T=6), x)[2][0] for m in ALL_MODES if m.compare == ">"}
    assert not np.array_equal(outs["subtract"], outs["zero"])
    lam_g = tie_graph(NeuronMode(">", "subtract"), T=6)
    lam_g.decay = 2048                                                 # lam 1/2: decayed vs undecayed differ
    a = reference_batch(lam_g, x)[2][0]
    lam_g.layers[0].reset = "subtract-undecayed"
    assert not np.array_equal(a, reference_batch(lam_g, x)[2][0])


def test_saf_int_is_its_own_formulation():
    """saf-int imports no LIF-form code (its resets are the accumulated charge, docstring), and it reads each
    layer's reset: the same network with one layer's reset changed gives other spikes."""
    import ast

    import saf.export.proof.saf_int as si
    tree = ast.parse(open(si.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("emulator" in m or "onnx" in m or "lava" in m for m in imported), imported
    g = with_modes(random_graph("dense", T=6, lam=0.5, seed=3), NeuronMode(">", "zero"))
    x = random_inputs(g, 6, seed=1)
    good = run_saf_int(g, x)
    for other in ("subtract", "subtract-undecayed"):
        g2 = copy.deepcopy(g)
        g2.spiking_layers[1].reset = other
        assert not _same(run_saf_int(g2, x).spikes, good.spikes)


# ---------------------------------------------------------------- certificate and declarations

def test_convention_row_checks_every_layer_against_every_backend():
    g = with_modes(random_graph("dense", T=6, lam=0.5, seed=3), NeuronMode(">=", "subtract-undecayed"))
    g.spiking_layers[0].reset, g.spiking_layers[0].compare = "zero", ">"
    ok = convention_check({"saf-int": BACKENDS["saf-int"].convention, "emulator": BACKENDS["emulator"].convention}, g)
    assert ok.ok and "fc0: 'fire when V > TH<<F, hard reset'" in ok.detail
    stock = convention_check({"lava": STOCK_MODES}, g)
    assert not stock.ok and "lava cannot run on layer fc1 'fire when V >= TH<<F, undecayed subtractive reset'" \
        in stock.detail
    fixed = certify(g, {"saf-int": BACKENDS["saf-int"].convention, "old": Convention(">=", "subtract")})
    assert not fixed.exact and any("old declares 'fire when V >= TH<<F, subtractive reset' on layer fc0, the IR "
                                   "says 'fire when V > TH<<F, hard reset'" in r for r in fixed.reasons)
    assert "lava" in mode_refusal(BACKENDS["lava"], g) and mode_refusal(BACKENDS["onnx"], g) == ""


def test_state_bound_counts_the_owed_subtraction():
    """subtract-undecayed: |V| can reach (Imax << F) geo + TH<<F; the certificate's bound says so."""
    g = random_graph("dense", T=6, lam=0.5, seed=3)
    b0 = [c for c in certify(g).checks if c.check == "state_24bit"]
    g2 = with_modes(g, NeuronMode(">=", "subtract-undecayed"))
    b1 = [c for c in certify(g2).checks if c.check == "state_24bit"]
    for c0, c1, l in zip(b0, b1, g.spiking_layers):
        v0 = int(c0.detail.split("= ")[1].split(" ")[0].replace(",", ""))
        v1 = int(c1.detail.split("= ")[1].split(" ")[0].replace(",", ""))
        assert v1 == v0 + (int(l.threshold) << int(l.frac_bits))


# ---------------------------------------------------------------- bundles and verify

def test_manifest_carries_modes_and_old_bundles_load_with_defaults(tmp_path, golden_demo_bundle):
    g = with_modes(random_graph("conv", T=6, lam=0.5, seed=3), NeuronMode(">", "zero"))
    g.spiking_layers[2].reset, g.spiking_layers[2].compare = "subtract", ">="
    b = certified_bundle(tmp_path, g)
    layers = json.loads((b.path / "manifest.json").read_text())["layers"]
    assert [(l.get("reset"), l.get("compare")) for l in layers] == [("zero", ">"), ("zero", ">"), (None, None),
                                                                     (None, None)]
    assert [l.mode for l in b.graph.spiking_layers] == [NeuronMode(">", "zero")] * 2 + [NeuronMode()]
    assert all(l.mode == NeuronMode() for l in golden_demo_bundle.graph.spiking_layers)   # written before modes
    m = json.loads((b.path / "manifest.json").read_text())
    m["layers"][0]["reset"] = "soft"
    (b.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"layers\[0\].'reset' .*must be one of 'subtract', 'subtract-undecayed', "
                                          r"'zero', got 'soft'"):
        load_graph(b.path)


@pytest.mark.parametrize("mode,fault", [(NeuronMode(">", "zero"), "reset-swap"), (NeuronMode(">", "zero"), "tie"),
                                        (NeuronMode(">=", "subtract-undecayed"), "reset-swap"),
                                        (NeuronMode(">", "subtract"), "tie"),
                                        (NeuronMode(">", "subtract-undecayed"), "hard-reset")],
                         ids=["zero-reset-swap", "zero-tie", "undecayed-reset-swap", "strict-tie", "undecayed-hard"])
def test_verify_passes_each_mode_and_catches_a_swapped_mode(tmp_path, mode, fault):
    g = with_modes(random_graph("dense", T=6, lam=0.5, seed=3), mode, recurrent=True)
    b = certified_bundle(tmp_path, g)
    x = random_inputs(g, 20, seed=1)
    rep = verify(b, x, None, ["saf-int", "emulator", "onnx"])
    assert rep.ok and rep.certificate["exact"] and all(p["expected_exact"] and p["spike_mismatches"] == 0
                                                       for p in rep.pairs)
    bad = verify(b, x, None, ["saf-int", "emulator", "onnx"], fault=fault)
    assert not bad.ok
    faulty = [p for p in bad.pairs if f"emulator[{fault}]" in (p["a"], p["b"])]
    assert faulty and all(p["expected_exact"] and p["spike_mismatches"] > 0 for p in faulty)


def test_a_backend_running_fixed_default_modes_is_not_an_exact_pair(tmp_path):
    """An old-style backend that declares one fixed (>=, subtract) neuron, run on a zero / > network: the
    convention row fails, its pairs are measured, not required exact, and the difference is seen."""
    g = with_modes(random_graph("dense", T=6, lam=0.5, seed=3), NeuronMode(">", "zero"))
    b = certified_bundle(tmp_path, g)
    x = random_inputs(g, 20, seed=1)

    def fixed(bundle, gr, xq, record_spikes, record_potentials, progress, **opts):
        return emulate(gr, xq, tie="ge", reset="subtract", record_spikes=record_spikes)
    old = BackendSpec("fixed-lif", Form.LIF, False, fixed, Convention(">=", "subtract"))
    rep = verify(b, x, None, [BACKENDS["saf-int"], BACKENDS["emulator"], old], mismatch_bound=1.0)
    row = [c for c in rep.certificate["checks"] if c["check"] == "convention"][0]
    assert not row["ok"] and "fixed-lif declares" in row["detail"]
    p = [p for p in rep.pairs if "fixed-lif" in (p["a"], p["b"])][0]
    assert not p["expected_exact"] and p["spike_mismatches"] > 0


def test_saf_e_refuses_a_spec_with_modes_and_bptt_deploys_it(tmp_path, capsys):
    """`saf train --method saf-e` on a spec with modes: one line, exit 2, nothing written; `--method bptt`
    trains it, export carries the modes into the bundle and verify passes on saf-int, emulator and onnx."""
    from saf.deploy.main import main
    spec = {"name": "modes-iris", "input_shape": [4], "num_classes": 3,
            "layers": [{"type": "linear", "out": 16, "reset": "zero", "compare": ">"},
                       {"type": "linear", "out": 8, "reset": "subtract-undecayed"}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    rc = main(["train", "--model", str(path), "--dataset", "iris", "--method", "saf-e", "--epochs", "1",
               "--out", str(tmp_path / "r0"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--method bptt" in err and not (tmp_path / "r0").exists()
    assert main(["train", "--model", str(path), "--dataset", "iris", "--method", "bptt", "--epochs", "2",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "LIF form accuracy" in out and "SAF form           none" in out
    assert main(["export", str(tmp_path / "run"), "--target", "loihi", "--out", str(tmp_path / "b")]) == 0
    assert main(["info", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "fire V > TH<<F, reset zero" in out and "fire V >= TH<<F, reset subtract-undecayed" in out
    g = load_graph(tmp_path / "b")
    assert [l.mode for l in g.spiking_layers] == [NeuronMode(">", "zero"), NeuronMode(">=", "subtract-undecayed")]
    capsys.readouterr()
    rc = main(["verify", str(tmp_path / "b"), "--backends", "saf-int,emulator,onnx,lif-float"])
    out = capsys.readouterr().out
    assert rc == 0 and "PASS" in out, out
    rc = main(["verify", str(tmp_path / "b"), "--backends", "saf-int,emulator,saf-float"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "saf-float cannot run this network" in err and "lif-float" in err


def test_loihi1_neuron_rule_reads_each_layers_modes():
    """Loihi 1's compartments reset to zero and compare strictly: a network whose every layer does that, on
    binary input, passes its neuron-model rule; one layer left with a subtractive reset (or firing at
    equality) is refused naming that layer (before, the rule read one network-wide default and refused
    every network)."""
    from saf.export.resources import check_resources
    from saf.hw_targets import LOIHI1

    g = random_graph("dense", T=4, lam=1.0, seed=3)
    g.input_bits, g.input_signed = 1, False                   # binary spike input

    def neuron_rule(graph):
        return [v.message for v in check_resources(graph, LOIHI1)[1] if v.rule == "neuron_model"]

    native = with_modes(g, NeuronMode(compare=">", reset="zero"))
    assert g.input_max == 1 and neuron_rule(native) == []
    assert "a subtractive reset (layer" in neuron_rule(g)[0] and "firing at V >= TH << F" in neuron_rule(g)[0]
    one_soft = copy.deepcopy(native)
    one_soft.spiking_layers[1].reset = "subtract-undecayed"
    msg = neuron_rule(one_soft)
    assert len(msg) == 1 and f"a subtractive reset (layer {one_soft.spiking_layers[1].name}:" in msg[0]
    one_eq = copy.deepcopy(native)
    one_eq.spiking_layers[0].compare = ">="
    one_eq.spiking_layers[0].threshold = 37                   # 37 << 6 - 1 is off Loihi 1's 64-grid
    msg = neuron_rule(one_eq)
    assert len(msg) == 1 and f"(layer {one_eq.spiking_layers[0].name}: V > " in msg[0]
