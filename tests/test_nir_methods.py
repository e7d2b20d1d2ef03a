"""`saf export RUN --target nir` for the other training methods (issue 23 item 4): an IDE, DSR or FP run
exported to NIR and imported back by `saf import` gives the same integer bundle as exporting the run
directly (weights.npz and model.onnx byte-identical, manifest equal apart from provenance)."""
from __future__ import annotations

import json

import numpy as np

import pytest
import torch

import nir  # noqa: E402

from saf.deploy.main import main  # noqa: E402

from saf_test_helpers.bundle_diff import bundle_differences
from saf_test_helpers.golden import GOLDEN

IDE_RUNS = GOLDEN.parent          # tests/golden/ide-digits (IF, sum readout), ide-digits-lif (lam 1/2, leaking readout)


def _round_trip(src, root, capsys=None) -> tuple:
    """(NIR file, bundle of `src` exported directly, bundle of the NIR file imported and exported)."""
    path = root / "m.nir"
    assert main(["export", str(src), "--target", "nir", "--out", str(path)]) == 0
    a, b = root / "bundle-a", root / "bundle-b"
    assert main(["export", str(src), "--target", "loihi", "--calibrate-data", "digits", "--out", str(a)]) == 0
    if capsys is not None:
        capsys.readouterr()
    assert main(["import", str(path), "--out", str(root / "run")]) == 0
    if capsys is not None:
        assert "assumed:" not in capsys.readouterr().out        # a file saf wrote says what it means
    assert main(["export", str(root / "run"), "--target", "loihi", "--calibrate-data", "digits", "--out", str(b)]) == 0
    return path, a, b


def _reexport(path, root, name: str):
    assert main(["import", str(path), "--out", str(root / f"run-{name}")]) == 0
    out = root / f"bundle-{name}"
    assert main(["export", str(root / f"run-{name}"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name,readout,node", [("ide-digits", "sum", "IF"), ("ide-digits-lif", "leaky-sum", "LIF")])
def test_ide_run_round_trips_through_nir(name, readout, node, tmp_path, capsys):
    """The IDE runs' spectrally normalised feedback (an Affine from the neuron back into it: a cycle) and
    their readout survive NIR; a feedback weight moved by 0.25 in the file changes weights.npz (the
    comparison is not vacuous)."""
    path, a, b = _round_trip(IDE_RUNS / name / "model.safetensors", tmp_path, capsys)
    graph = nir.read(str(path))
    meta = json.loads(graph.metadata["saf"])
    assert (meta["reset"], meta["compare"], meta["readout"]) == ("subtract", "ge", readout)
    assert ("layer0_neuron", "feedback0") in graph.edges and ("feedback0", "layer0_neuron") in graph.edges
    assert type(graph.nodes["layer0_neuron"]).__name__ == node
    assert bundle_differences(a, b) == []
    graph.nodes["feedback0"].weight[3, 5] += 0.25
    bad = tmp_path / "bad.nir"
    nir.write(str(bad), graph)
    assert "weights.npz" in bundle_differences(a, _reexport(bad, tmp_path, "bad"))


@pytest.fixture(scope="module", params=[("lif-alpha-spike", 0.5, 0.5, "spike"), ("if-linear", 1.0, 1.0, "linear")],
                ids=lambda p: p[0])
def dsr_run(request, tmp_path_factory):
    """A DSR run trained briefly here (mlp-digits, 2 epochs on 400 images): LIF lam 1/2 firing at V/2 with
    the spiking output layer read as spike counts, or IF with the linear readout."""
    name, lam, alpha, readout = request.param
    root = tmp_path_factory.mktemp(f"dsr-{name}")
    assert main(["train", "--model", "mlp-digits", "--method", "dsr", "--lam", str(lam), "--dsr-alpha", str(alpha),
                 "--dsr-readout", readout, "--epochs", "2", "--limit-train", "400", "--batch-size", "32", "--T", "6",
                 "--lr", "0.05", "--no-progress", "--out", str(root / "trained")]) == 0
    return root / "trained" / "best.safetensors", alpha, readout


def test_dsr_run_round_trips_through_nir(dsr_run, tmp_path, capsys):
    """Per-layer trained thresholds as v_threshold = alpha V^l (the reset's V^l in node metadata), weights
    carrying V^(l-1), the spiking output layer + spike-count readout: `saf import` rebuilds the DSR run
    with the trained run's own float tensors, bit for bit, and the bundles are identical."""
    from saf.train.checkpoint import load_model

    src, alpha, readout = dsr_run
    path, a, b = _round_trip(src, tmp_path, capsys)
    graph = nir.read(str(path))
    meta = json.loads(graph.metadata["saf"])
    assert (meta["method"], meta["dsr"]["alpha"], meta["dsr"]["readout"]) == ("dsr", alpha, readout)
    assert meta["readout"] == ("spike_count" if readout == "spike" else "leaky-sum")
    net, _, _ = load_model(src)
    back, spec, cfg = load_model(tmp_path / "run")
    assert type(back).__name__ == "DSRNet" and cfg["method"] == "dsr" and back.readout_kind == net.readout_kind
    V = net.thresholds().detach()
    assert len(set(V.tolist())) == len(V) > 1                  # the layers' thresholds were trained apart
    assert torch.equal(back.thresholds(), V)
    neurons = [n for n in graph.nodes.values() if type(n).__name__ in ("LIF", "IF")]
    assert [float(n.v_threshold[0]) for n in neurons] == [alpha * v for v in V.tolist()]
    for mine, theirs in zip(list(net.blocks) + [net.readout], list(back.blocks) + [back.readout]):
        assert torch.equal(mine.effective_weight().detach(), theirs.effective_weight().detach())
        assert torch.equal(mine.bias.detach(), theirs.bias.detach())
    assert bundle_differences(a, b) == []


def test_dsr_nir_faults_are_caught(dsr_run, tmp_path, capsys):
    """Not vacuous: a weight moved in the file changes weights.npz; a v_threshold that no longer equals
    alpha x its saf_reset_by, or a neuron without it, is refused in one line (exit 2, nothing written)."""
    src, _, _ = dsr_run
    path = tmp_path / "m.nir"
    assert main(["export", str(src), "--target", "nir", "--out", str(path)]) == 0
    a = tmp_path / "bundle-a"
    assert main(["export", str(src), "--target", "loihi", "--calibrate-data", "digits", "--out", str(a)]) == 0
    graph = nir.read(str(path))
    graph.nodes["layer1_syn"].weight[0, 0] += 0.25
    nir.write(str(tmp_path / "w.nir"), graph)
    assert "weights.npz" in bundle_differences(a, _reexport(tmp_path / "w.nir", tmp_path, "w"))
    for fault in ("threshold", "metadata"):
        graph = nir.read(str(path))
        n = graph.nodes["layer1_neuron"]
        if fault == "threshold":
            n.v_threshold = n.v_threshold * 1.001
        else:
            del n.metadata["saf_reset_by"]
        bad = tmp_path / f"{fault}.nir"
        nir.write(str(bad), graph)
        capsys.readouterr()
        assert main(["import", str(bad), "--out", str(tmp_path / f"run-{fault}")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "layer1_neuron" in err and "saf_reset_by" in err, err
        assert not (tmp_path / f"run-{fault}").exists()


@pytest.fixture(scope="module")
def fp_run(tmp_path_factory):
    """An FP run trained here: `saf train --method fp --model fp-iris`, 2 epochs."""
    root = tmp_path_factory.mktemp("fp")
    assert main(["train", "--method", "fp", "--model", "fp-iris", "--epochs", "2", "--no-progress",
                 "--out", str(root / "trained")]) == 0
    return root / "trained"


def _fp_bundles(src, root, name: str):
    out = root / f"bundle-{name}"
    assert main(["export", str(src), "--target", "loihi", "--dt-exp", "5", "--out", str(out)]) == 0
    return out


def test_fp_run_round_trips_through_nir_as_cubalif(fp_run, tmp_path, capsys):
    """FP's two-state neuron as CubaLIF (tau_syn = 1/alpha, w_in = tau_syn, tau_mem = r = 1/beta), the
    first-spike readout and the discrete update in the graph metadata; `saf import` writes the FP
    checkpoint again with the same float64 weights, and the Loihi bundles are identical (the copied
    checkpoint aside: provenance). A weight moved in the file changes weights.npz; a tau_syn that
    contradicts the metadata is refused in one line."""
    from saf.train.methods.fp.checkpoint import load_fp_checkpoint

    path = tmp_path / "fp.nir"
    assert main(["export", str(fp_run), "--target", "nir", "--out", str(path)]) == 0
    graph = nir.read(str(path))
    meta = json.loads(graph.metadata["saf"])
    net, _ = load_fp_checkpoint(fp_run / "best.safetensors")
    assert (meta["method"], meta["readout"]) == ("fp", "first_spike") and "dt" in meta["discrete"]
    n0 = graph.nodes["layer0_neuron"]
    assert type(n0).__name__ == "CubaLIF" and float(n0.tau_syn[0]) == 1 / net.params.alpha == float(n0.w_in[0])
    assert float(n0.tau_mem[0]) == 1 / net.params.beta == float(n0.r[0])
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    back, cfg = load_fp_checkpoint(tmp_path / "run")
    assert cfg["method"] == "fp" and back.params == net.params and back.code == net.code
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))
    a, b = _fp_bundles(fp_run / "best.safetensors", tmp_path, "a"), _fp_bundles(tmp_path / "run", tmp_path, "b")
    assert [d for d in bundle_differences(a, b) if d != "files.fp-model.safetensors"] == []
    graph.nodes["layer1_syn"].weight[0, 0] += 0.5
    nir.write(str(tmp_path / "w.nir"), graph)
    assert main(["import", str(tmp_path / "w.nir"), "--out", str(tmp_path / "run-w")]) == 0
    assert "weights.npz" in bundle_differences(a, _fp_bundles(tmp_path / "run-w", tmp_path, "w"))
    graph = nir.read(str(path))
    graph.nodes["layer1_neuron"].tau_syn = graph.nodes["layer1_neuron"].tau_syn * 2
    nir.write(str(tmp_path / "t.nir"), graph)
    capsys.readouterr()
    assert main(["import", str(tmp_path / "t.nir"), "--out", str(tmp_path / "run-t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer1_neuron" in err and "Traceback" not in err, err
    assert not (tmp_path / "run-t").exists()
