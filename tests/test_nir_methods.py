"""`saf export RUN --target nir` for the other training methods (issue 23 item 4): an IDE, DSR or FP run
exported to NIR and imported back by `saf import` gives the same integer bundle as exporting the run
directly (weights.npz and model.onnx byte-identical, manifest equal apart from provenance)."""
from __future__ import annotations

import json

import pytest

import nir  # noqa: E402

from saf.deploy.main import main  # noqa: E402

from bundle_diff import bundle_differences  # noqa: E402
from conftest import GOLDEN  # noqa: E402

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
