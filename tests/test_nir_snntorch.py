"""snnTorch networks trained on digits in the test, exported with snnTorch's own export_to_nir
(ignore_dims=[0], per-neuron parameters), imported with `saf import`: the float LIF form reproduces
snnTorch's spikes of every layer at every step on the whole test set, and its readout sum."""
from __future__ import annotations

import pytest
import torch


from saf_test_helpers import nir_nets as N
from saf_test_helpers.nir_nets import lif_form, mismatches
from saf.deploy.main import main  # noqa: E402

NETS = {"leaky-subtract": ("subtract", False, "subtract-undecayed"), "leaky-zero": ("zero", False, "zero"),
        "rleaky-subtract": ("subtract", True, "subtract-undecayed")}


@pytest.fixture(scope="module")
def data():
    return N.digits()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """name -> (snnTorch net, its .nir file, its run directory imported with the reset snnTorch computes)."""
    out = {}
    root = tmp_path_factory.mktemp("nir-snntorch")
    for name, (reset, rec, flag) in NETS.items():
        net = N.train_snntorch(N.snntorch_net(reset, rec), data)
        path = root / f"{name}.nir"
        N.export_snntorch(net, path)
        assert main(["import", str(path), "--out", str(root / name), "--reset", flag]) == 0
        out[name] = (net, path, root / name)
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_float_form_reproduces_snntorch_spikes_of_every_layer(name, trained, data):
    net, _, run = trained[name]
    x = data.x_test.float()
    ref_out, ref_spikes = N.run_float64(N.snntorch_run, net, x, record=True)
    out, spikes = lif_form(run, x)
    assert len(spikes) == len(ref_spikes) == 2
    assert all(sum(int(s.sum()) for s in layer) > 1000 for layer in ref_spikes)     # the layers do fire
    assert mismatches(spikes, ref_spikes) == [0, 0]
    assert torch.equal(out.argmax(1), ref_out.argmax(1))
    assert float((out - ref_out).abs().max()) <= 1e-9 * float(ref_out.abs().max())   # float64 sums, other order
    acc = float((ref_out.argmax(1) == data.y_test).float().mean())
    assert acc > 0.9, acc


def test_a_wrong_reset_is_caught_by_the_spike_comparison(trained, data, tmp_path):
    """The comparison is not vacuous: the same file imported with saf's own (decayed) subtraction or with
    a >= compare differs from snnTorch's spikes."""
    net, path, _ = trained["leaky-subtract"]
    x = data.x_test.float()
    _, ref_spikes = N.run_float64(N.snntorch_run, net, x, record=True)
    for flags in (["--reset", "subtract"], ["--reset", "zero"]):
        run = tmp_path / flags[1]
        assert main(["import", str(path), "--out", str(run), *flags]) == 0
        _, spikes = lif_form(run, x)
        assert sum(mismatches(spikes, ref_spikes)) > 100, flags


# Lava's stock LIF runs zero reset with a strict compare as it is; snnTorch's undecayed subtraction and the
# recurrent layer need the toolchain's own Lava Processes (lava refuses both in one line naming lava-own)
LAVA = {"leaky-subtract": "lava-own", "leaky-zero": "lava", "rleaky-subtract": "lava-own"}


# The issue's >= 99 % agreement with snnTorch holds for the two Leaky nets at one synapse word per weight. The RLeaky
# net's recurrence amplifies the 8-bit rounding of every layer (98.33 % at one word; docs/nir.md): it is exported with
# two synapse words per weight (--synapse-words 2, ~10-11-bit weights within the 24-bit state), which is what the
# >= 99 % is asserted on; its one-word agreement is still measured and printed for comparison.
AGREES_99 = ("leaky-subtract", "leaky-zero", "rleaky-subtract")
WORDS = {"rleaky-subtract": 2}


def _deployed_agreement(bundle, net, x) -> float:
    from saf.export.bundle.store import load_graph
    from saf.export.proof.saf_int import run_saf_int

    graph = load_graph(bundle)
    deployed = run_saf_int(graph, graph.quantize_input(x.numpy()), record_spikes=False).readout.argmax(1)
    ref, _ = N.snntorch_run(net, x)
    return float((deployed == ref.argmax(1).numpy()).mean())


@pytest.mark.parametrize("name", list(NETS))
def test_deploys_to_loihi_with_zero_mismatches_and_snntorchs_predictions(name, trained, data, tmp_path, capsys):
    """saf export --target loihi -> saf verify: 0 mismatching spikes across saf-int, emulator, ONNX and Lava
    (exit 0 requires it), and the deployed readout predicts what snnTorch predicts on >= 99 % of the test set."""
    net, _, run = trained[name]
    bundle = tmp_path / "bundle"
    words = WORDS.get(name, 1)
    x = data.x_test.float()
    if words != 1:                                   # the one-word export, measured for comparison
        one = tmp_path / "one-word"
        assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(one)]) == 0
        hint = [line for line in capsys.readouterr().out.splitlines() if line.startswith("hint:")]
        one_agree = _deployed_agreement(one, net, x)
        assert (one_agree < 0.99) == (len(hint) == 1) and (not hint or "--synapse-words 2" in hint[0])
        with capsys.disabled():
            print(f"deployed vs snnTorch ({name}, 1 synapse word): {one_agree:.4f} same prediction")
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle),
                 "--synapse-words", str(words)]) == 0
    assert main(["verify", str(bundle), "--backends", f"saf-int,emulator,onnx,{LAVA[name]}", "--lava-limit", "20"]) == 0
    from saf.export.bundle.store import load_graph

    assert {l.weight_words for l in load_graph(bundle).layers} == {words}
    agree = _deployed_agreement(bundle, net, x)
    with capsys.disabled():
        print(f"deployed vs snnTorch ({name}, {words} synapse word(s)): {agree:.4f} same prediction")
    if name in AGREES_99:
        assert agree >= 0.99, agree
