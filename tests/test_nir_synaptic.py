"""snnTorch Synaptic (NIR CubaLIF with a decaying synaptic current, tau_syn > dt): trained on digits in the test,
exported with snnTorch's own export_to_nir, `saf import`ed as layers with a synaptic decay "alpha". The float LIF
form reproduces snnTorch's spikes of every layer at every step (the bias integrated by the current, as snnTorch
does); the net deploys to Loihi with an exact certificate, with or without biases in front of its Synaptic neurons
(a bias deploys as the IR's initial current u0 plus a V bias, export/quantize.py)."""
from __future__ import annotations

import pytest
import torch

from saf_test_helpers import nir_nets as N
from saf_test_helpers.nir_nets import lif_form, mismatches
from saf.deploy.main import main  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return N.digits()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """bias -> (snnTorch Synaptic net (alpha = beta = 0.5, subtract reset), .nir file, imported run)."""
    out, root = {}, tmp_path_factory.mktemp("nir-synaptic")
    for bias in (True, False):
        net = N.train_snntorch(N.synaptic_net("subtract", bias=bias), data)
        path, run = root / f"syn-{bias}.nir", root / f"run-{bias}"
        N.export_snntorch(net, path)
        assert main(["import", str(path), "--out", str(run), "--reset", "subtract-undecayed"]) == 0
        out[bias] = (net, path, run)
    return out


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_float_form_reproduces_snntorch_synaptic_spikes(bias, trained, data):
    from saf.train.checkpoint import load_model
    net, _, run = trained[bias]
    assert [l.get("alpha") for l in load_model(run)[1]["layers"] if "out" in l] == [0.5, 0.5]
    x = data.x_test.float()
    ref_out, ref_spikes = N.run_float64(N.snntorch_run, net, x, record=True)
    out, spikes = lif_form(run, x)
    assert all(sum(int(s.sum()) for s in layer) > 1000 for layer in ref_spikes)
    assert mismatches(spikes, ref_spikes) == [0, 0]
    assert torch.equal(out.argmax(1), ref_out.argmax(1))
    assert float((ref_out.argmax(1) == data.y_test).float().mean()) > 0.9


def test_ignoring_the_synaptic_current_is_caught(trained, data):
    """Fault: the same imported weights with the current dropped (alpha 0: syn = W x + b) differ from snnTorch."""
    from saf.train.checkpoint import load_model
    from saf.train.modules.network import Record, SpikingNet
    net, _, run = trained[True]
    model, spec, _ = load_model(run)
    spec0 = dict(spec, layers=[{k: v for k, v in l.items() if k != "alpha"} for l in spec["layers"]])
    bad = SpikingNet(spec0, readout=model.readout_kind)
    bad.load_state_dict(model.state_dict())
    x = data.x_test.double()
    _, ref_spikes = N.run_float64(N.snntorch_run, net, x, record=True)
    bad = bad.double()
    st, spikes = bad.init_lif(), [[], []]
    with torch.no_grad():
        for _ in range(int(spec["T"])):
            rec = Record()
            _, st = bad.lif_step(x, st, "plain", rec)
            for l, s in enumerate(rec.spikes):
                spikes[l].append(s)
    assert sum(mismatches(spikes, ref_spikes)) > 1000


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_deploys_to_loihi_exactly_with_snntorchs_predictions(bias, trained, data, tmp_path):
    """saf export --target loihi (two-state layers, du = 2047; with biases the initial current u0 = -(c << F),
    B = c = 2 b s) -> certificate EXACT (current_decay and initial_current rows) -> saf verify: 0 mismatches across
    saf-int, emulator, ONNX and lava-own; deployed prediction == snnTorch's on >= 99 %."""
    import json
    from saf.export.bundle.store import load_graph
    from saf.export.proof.saf_int import run_saf_int
    net, _, run = trained[bias]
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    graph = load_graph(bundle)
    assert [l.du for l in graph.spiking_layers] == [2047, 2047]
    assert [l.has_initial_current for l in graph.spiking_layers] == [bias, bias]
    if bias:                 # the Synaptic mapping: U[0] = -(B << F), B = c
        assert all((l.u0 == -(l.bias << l.frac_bits)).all() and l.bias.any() for l in graph.spiking_layers)
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator,onnx,lava-own", "--lava-limit", "20"]) == 0
    rep = json.loads((tmp_path / "bundle-verify" / "verify.json").read_text())
    assert rep["certificate"]["exact"]
    checks = rep["certificate"]["checks"]
    assert sum(c["check"] == "current_decay" and c["ok"] for c in checks) == 2
    assert sum(c["check"] == "initial_current" and c["ok"] for c in checks) == (2 if bias else 0)
    x = data.x_test.float()
    deployed = run_saf_int(graph, graph.quantize_input(x.numpy()), record_spikes=False).readout.argmax(1)
    ref, _ = N.snntorch_run(net, x)
    agree = float((deployed == ref.argmax(1).numpy()).mean())
    print(f"deployed vs snnTorch (Synaptic, {'bias' if bias else 'no bias'}): {agree:.4f} same prediction")
    assert agree >= 0.99, agree
    # fault: the emulator ignoring the current register (du) is caught by verify against saf-int
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator", "--inject-fault", "current-decay"]) != 0
    # fault: the emulator starting U at 0 (u0 ignored) is caught; refused where there is no u0 to ignore
    rc = main(["verify", str(bundle), "--backends", "saf-int,emulator", "--inject-fault", "initial-current"])
    assert rc == (1 if bias else 2), rc


def test_stock_lava_refuses_the_initial_current_in_one_line(trained, tmp_path, capsys):
    """Lava's stock LIFReset zeroes u every sample: a bundle with u0 is refused (one reason per layer; verify says it
    in one line pointing to lava-own, exit 2)."""
    from saf.deploy.lava.stock import stock_problems
    from saf.export.bundle.store import load_graph
    _, _, run = trained[True]
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    lines = [p for p in stock_problems(load_graph(bundle)) if "initial current" in p]
    assert len(lines) == 2 and "conv1" in lines[0] and "resets u to 0" in lines[0]
    capsys.readouterr()
    assert main(["verify", str(bundle), "--backends", "saf-int,lava", "--lava-limit", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "initial current" in err[0] and "lava-own" in err[0], err


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.5", True])
def test_spec_refuses_a_bad_synaptic_decay_in_one_line(bad):
    from saf.train.spec import SpecError, plan
    spec = {"input_shape": [4], "num_classes": 2, "layers": [{"type": "linear", "out": 3, "alpha": bad}]}
    with pytest.raises(SpecError, match=r"'alpha'") as e:
        plan(spec)
    assert "\n" not in str(e.value)
    ok = plan(dict(spec, layers=[{"type": "linear", "out": 3, "alpha": 0.5}]))
    assert ok.layers[0].syn_decay == 0.5 and plan(dict(spec, layers=[{"type": "linear", "out": 3}])).layers[0].syn_decay == 0


def test_saf_and_ottt_refuse_a_synaptic_current():
    from saf.core.neuron_modes import DEFAULT_MODE, method_refusal
    assert "synaptic current" in method_refusal("saf", [DEFAULT_MODE], [0.5])
    assert "synaptic current" in method_refusal("ottt", [DEFAULT_MODE], [0.5])
    assert method_refusal("bptt", [DEFAULT_MODE], [0.5]) == "" and method_refusal("saf", [DEFAULT_MODE], [0.0]) == ""
