"""Norse networks (LIFBoxCell, IAFCell) trained on digits in the test, exported with Norse's own to_nir,
imported with `saf import`: the float LIF form equals Norse's forward pass, spikes of every layer at every
step and the readout's prediction. Norse 1.1.0's to_nir writes LIF tau = dt / tau_mem_inv (NIR's tau is
1 / tau_mem_inv), so its files import with --dt = dt^2 (1e-6 at Norse's default dt = 0.001): docs/nir.md."""
from __future__ import annotations

import pytest
import torch


from saf_test_helpers import nir_nets as N
from saf.deploy.main import main  # noqa: E402
from saf_test_helpers.nir_nets import lif_form, mismatches

CELLS = {"lifbox": ["--dt", "1e-6", "--reset", "zero"], "iaf": ["--reset", "zero"]}


@pytest.mark.parametrize("cell", list(CELLS))
def test_float_form_equals_norse_forward(cell, tmp_path):
    data = N.digits()
    net = N.train_norse(N.norse_net(cell), data, epochs=2)
    path = tmp_path / "norse.nir"
    N.export_norse(net, path)
    assert main(["import", str(path), "--out", str(tmp_path / "run"), *CELLS[cell]]) == 0
    x = data.x_test.float()
    ref, ref_spikes = N.run_float64(N.norse_run, net, x, record=True)
    out, spikes = lif_form(tmp_path / "run", x.flatten(1))     # Norse's Input is [64]
    assert all(sum(int(s.sum()) for s in layer) > 1000 for layer in ref_spikes)
    assert mismatches(spikes, ref_spikes) == [0, 0]
    assert torch.equal(out.argmax(1), ref.argmax(1))
    assert float((ref.argmax(1) == data.y_test).float().mean()) > 0.3      # trained: far above chance (0.1)
    # not vacuous: the default dt (snnTorch's) or a subtractive reset gives other spikes
    wrong = ["--reset", "subtract"] + (["--dt", "1e-6"] if cell == "lifbox" else [])
    assert main(["import", str(path), "--out", str(tmp_path / "wrong"), *wrong]) == 0
    assert sum(mismatches(lif_form(tmp_path / "wrong", x.flatten(1))[1], ref_spikes)) > 100


def test_norse_flat_input_reads_the_digits_and_deploys_to_loihi(tmp_path, capsys):
    """Norse writes no Flatten (its Input is [64]): `saf import` reads the digits images flattened in C order
    (said in its assumed line), so the run goes through saf export -> saf verify: 0 mismatching spikes across
    saf-int, emulator, ONNX and Lava's own stock LIF (zero reset, `>`: Lava's model as it is). The deployed
    prediction's agreement with Norse is measured (printed), not asserted: docs/nir.md."""
    from saf.export.bundle.store import load_graph
    from saf.export.proof.saf_int import run_saf_int

    data = N.digits()
    net = N.train_norse(N.norse_net("iaf"), data, epochs=2)
    path = tmp_path / "norse.nir"
    N.export_norse(net, path)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["import", str(path), "--out", str(run), "--reset", "zero"]) == 0
    assert "--input-shape 1,8,8 (the Input is a flat [64]" in capsys.readouterr().out
    x = data.x_test.float()
    ref, _ = N.run_float64(N.norse_run, net, x)
    out, _ = lif_form(run, x)                                   # the images, not x.flatten(1)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    assert main(["export", str(run), "--target", "loihi", "--calibrate-data", "digits", "--out", str(bundle)]) == 0
    assert main(["verify", str(bundle), "--backends", "saf-int,emulator,onnx,lava", "--lava-limit", "10"]) == 0
    g = load_graph(bundle)
    deployed = run_saf_int(g, g.quantize_input(x.numpy()), record_spikes=False).readout.argmax(1)
    print(f"deployed vs Norse (IAF): {float((deployed == ref.argmax(1).numpy()).mean()):.4f} same prediction")


def test_input_shape_flag_is_checked_in_one_line(tmp_path, capsys):
    data = N.digits()
    path = tmp_path / "norse.nir"
    N.export_norse(N.norse_net("iaf"), path)
    for flag, word in (("1,8,9", "72 values, the Input of"), ("1,x", "expected positive integers")):
        capsys.readouterr()
        assert main(["import", str(path), "--out", str(tmp_path / "r"), "--input-shape", flag]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err, err
        assert not (tmp_path / "r").exists()
    assert main(["import", str(path), "--out", str(tmp_path / "flat"), "--input-shape", "64"]) == 0
    from saf.train.checkpoint import load_model
    assert load_model(tmp_path / "flat")[1]["input_shape"] == [64] and data.x_test.shape[1:] == (1, 8, 8)
