"""Norse networks (LIFBoxCell, IAFCell) trained on digits in the test, exported with Norse's own to_nir,
imported with `saf import`: the float LIF form equals Norse's forward pass, spikes of every layer at every
step and the readout's prediction. Norse 1.1.0's to_nir writes LIF tau = dt / tau_mem_inv (NIR's tau is
1 / tau_mem_inv), so its files import with --dt = dt^2 (1e-6 at Norse's default dt = 0.001): docs/nir.md."""
from __future__ import annotations

import pytest
import torch


import nir_nets as N  # noqa: E402
from saf.deploy.main import main  # noqa: E402
from test_nir_snntorch import lif_form, mismatches  # noqa: E402

CELLS = {"lifbox": ["--dt", "1e-6", "--reset", "zero"], "iaf": ["--reset", "zero"]}


@pytest.mark.parametrize("cell", list(CELLS))
def test_float_form_equals_norse_forward(cell, tmp_path):
    data = N.digits()
    net = N.train_norse(N.norse_net(cell), data, epochs=2)
    path = tmp_path / "norse.nir"
    N.export_norse(net, path)
    assert main(["import", str(path), "--out", str(tmp_path / "run"), *CELLS[cell]]) == 0
    x = data.x_test.float()
    with torch.no_grad():
        ref, ref_spikes = N.norse_run(net, x, record=True)
    out, spikes = lif_form(tmp_path / "run", x.flatten(1))     # Norse's Input is [64]
    assert all(sum(int(s.sum()) for s in layer) > 1000 for layer in ref_spikes)
    assert mismatches(spikes, ref_spikes) == [0, 0]
    assert torch.equal(out.argmax(1), ref.argmax(1))
    assert float((ref.argmax(1) == data.y_test).float().mean()) > 0.3      # trained: far above chance (0.1)
    # not vacuous: the default dt (snnTorch's) or a subtractive reset gives other spikes
    wrong = ["--reset", "subtract"] + (["--dt", "1e-6"] if cell == "lifbox" else [])
    assert main(["import", str(path), "--out", str(tmp_path / "wrong"), *wrong]) == 0
    assert sum(mismatches(lif_form(tmp_path / "wrong", x.flatten(1))[1], ref_spikes)) > 100
