"""`--fuzz` says, per layer, whether a threshold tie V == TH<<F was reached (issue 22, item 10): a layer
where none was makes the summary "PASS (ties not reached in: ...)" and exit status 1, 0 only with
--allow-untested-ties. Old code printed a note and PASS, exit 0."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saf.deploy.main import main
from saf.export.bundle.store import write_bundle
from saf.export.synthetic import random_graph, random_inputs


@pytest.fixture(scope="module")
def silent_last_layer(tmp_path_factory):
    """A network whose last spiking layer has zero weights and bias: V stays 0, never at TH<<F > 0."""
    g = random_graph("dense", T=4, lam=0.5, seed=7)
    last = g.spiking_layers[-1]
    last.weight[...] = 0
    last.bias[...] = 0
    d = tmp_path_factory.mktemp("t")
    b = write_bundle(g, d / "b")
    np.save(d / "x.npy", random_inputs(g, 6, seed=0))
    return b, d / "x.npy", last.name


def _verify(b, x, out, *extra):
    return main(["verify", str(b), "--backends", "saf-int,emulator", "--inputs", str(x), "--fuzz", "11",
                 "--out", str(out), "--no-progress", *extra])


def test_untied_layer_exits_1_unless_allowed(silent_last_layer, tmp_path, capsys):
    b, x, name = silent_last_layer
    rc = _verify(b, x, tmp_path / "v", "--report", str(tmp_path / "r.md"))
    out = capsys.readouterr().out
    md = (tmp_path / "r.md").read_text()
    assert md.startswith(f"# saf verify: PASS (ties not reached in: {name})") and f"{name} NO" in md
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rc == 1 and not rep["ok"] and not rep["failures"], rep["failures"]
    assert rep["untied"] == [name] and rep["fuzz"]["ties_reached"][name] is False
    assert f"verify: PASS (ties not reached in: {name})" in out and "--allow-untested-ties" in out
    assert f"{name} NO" in out
    rc = _verify(b, x, tmp_path / "w", "--allow-untested-ties")
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "w" / "verify.json").read_text())
    assert rc == 0 and rep["ok"] and f"verify: PASS (ties not reached in: {name})" in out
    assert "accepted with --allow-untested-ties" in out
