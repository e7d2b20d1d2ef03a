"""Per-layer reset / compare modes on Lava: lava-own (the toolchain's Processes) runs every mode; the stock
backend runs Lava's LIF model as it is for a zero-reset, strict-compare layer (no override), overrides only
what differs for the others, and refuses subtract-undecayed in one line naming lava-own (verify's default
list then swaps lava-own in, with its note). Few samples and steps: Lava is slow."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from lava.proc.lif.models import PyLifResetModelBitAcc

from saf_test_helpers.reference_lif import reference_batch
from saf_test_helpers.graphs import IDS, certified_bundle, tie_graph, with_modes

import saf.deploy.lava.stock as stock  # noqa: E402
from saf.deploy.backends.registry import BACKENDS, BackendError, Bundle, run_backend  # noqa: E402
from saf.deploy.lava.backend import run_lava  # noqa: E402
from saf.deploy.lava.procs.stock_lif import MODELS  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.deploy.backends.spec import resolve_backends, with_fallbacks  # noqa: E402
from saf.deploy.cli.run import DEFAULT_BACKENDS  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402
from saf.core.neuron_modes import ALL_MODES, NeuronMode  # noqa: E402


def _check(g, x, res):
    R, S, _ = reference_batch(g, x)
    np.testing.assert_array_equal(res.readout, R)
    for li, (a, b) in enumerate(zip(res.spikes, S)):
        np.testing.assert_array_equal(a, b, err_msg=f"layer {li}")
    return S


@pytest.mark.parametrize("mode", ALL_MODES, ids=IDS)
def test_lava_own_runs_every_mode_on_dense_conv_and_recurrent_layers(mode):
    for arch, rec in (("conv", False), ("dense", True)):
        g = with_modes(random_graph(arch, T=4, lam=0.5, seed=3), mode, recurrent=rec)
        x = random_inputs(g, 2, seed=1)
        S = _check(g, x, run_lava(g, x))
        assert all(0.03 < float(s.mean()) < 0.97 for s in S)
    t = tie_graph(mode)
    _check(t, np.array([[6], [5]]), run_lava(t, np.array([[6], [5]])))


STOCK = [m for m in ALL_MODES if m.reset != "subtract-undecayed"]


@pytest.mark.parametrize("mode", STOCK, ids=[f"{m.reset}{m.compare}" for m in STOCK])
def test_stock_lava_runs_the_modes_it_can_with_only_the_overrides_it_needs(mode):
    g = with_modes(random_graph("conv", T=4, lam=0.5, seed=3), mode)
    x = random_inputs(g, 2, seed=1)
    res = stock.run_lava_stock(g, x)
    _check(g, x, res)
    t = tie_graph(mode)
    _check(t, np.array([[6], [5]]), stock.run_lava_stock(t, np.array([[6], [5]])))
    neuron = [p for layer in res.info["models"][1:-1] for p in layer["parts"] if p["role"] == "neuron"]
    model, over = MODELS[(mode.compare, mode.reset)]
    assert all(p["process"] == "lava.proc.lif.process.LIFReset" for p in neuron)
    assert all(p["model"] == f"{model.__module__}.{model.__qualname__}" for p in neuron)
    if mode == NeuronMode(">", "zero"):       # Lava's own model, as it is: no override
        assert model is PyLifResetModelBitAcc and over == ()
        assert all(p["own_code"] == "none (Lava's Process and ProcessModel)" for p in neuron)
        assert res.info["neuron_overrides"] == {l.name: [] for l in g.spiking_layers}
    else:
        assert all(p["own_code"].endswith("overriding only " + ", ".join(sorted(over))) for p in neuron)


def test_stock_lava_mixed_modes_per_layer_and_a_wrong_model_is_caught(monkeypatch):
    """Layers with different modes get different models in one network; mapping a zero / > layer to the
    default override (>= / subtract) changes the spikes, so the per-layer choice is what makes it exact."""
    g = random_graph("conv", T=4, lam=0.5, seed=3)
    g.spiking_layers[0].reset, g.spiking_layers[0].compare = "zero", ">"
    g.spiking_layers[1].compare = ">"
    t = tie_graph(NeuronMode(">", "zero"), T=6)
    x, xt = random_inputs(g, 2, seed=1), np.array([[6], [5], [9]])
    res = stock.run_lava_stock(g, x)
    _check(g, x, res)
    assert res.info["neuron_overrides"] == {"conv0": [], "conv1": ["reset_voltage"],
                                            "fc2": ["spiking_activation", "reset_voltage"]}
    S = _check(t, xt, stock.run_lava_stock(t, xt))
    wrong = dict(MODELS)
    wrong[(">", "zero")] = MODELS[(">=", "subtract")]
    monkeypatch.setattr(stock, "MODELS", wrong)
    bad = stock.run_lava_stock(t, xt)
    assert sum(int((a != b).sum()) for a, b in zip(bad.spikes, S)) > 0


def test_stock_lava_refuses_subtract_undecayed_naming_lava_own_and_verify_swaps_it(tmp_path):
    g = with_modes(random_graph("dense", T=4, lam=0.5, seed=3), NeuronMode(">", "subtract-undecayed"))
    why = BACKENDS["lava"].refuses(g)
    assert "reset 'subtract-undecayed'" in why and why.endswith("use lava-own (the toolchain's own Lava Processes)")
    assert "\n" not in why
    with pytest.raises(BackendError, match="lava cannot run this network: layer fc0: reset 'subtract-undecayed'"):
        run_backend("lava", Bundle(None, {}, g), random_inputs(g, 1))
    b = certified_bundle(tmp_path, g)
    x = random_inputs(g, 3, seed=1)
    specs, notes = with_fallbacks(resolve_backends(DEFAULT_BACKENDS.split(",")), b.graph)
    names = [s.name for s in specs]
    assert "lava" not in names and "lava-own" in names
    assert any(n.startswith("lava replaced by lava-own") for n in notes)
    rep = verify(b, x, None, specs, lava_limit=2)
    assert rep.ok and all(p["spike_mismatches"] == 0 and p["expected_exact"] for p in rep.pairs)


def test_stock_lava_on_a_zero_strict_bundle_is_covered_and_exact(tmp_path):
    """Lava's stock LIF with no override: the certificate's convention row holds for it, verify requires it
    to agree exactly with saf-int and the emulator, and it does."""
    g = with_modes(random_graph("dense", T=4, lam=0.5, seed=3), NeuronMode(">", "zero"))
    b = certified_bundle(tmp_path, g)
    x = random_inputs(g, 3, seed=1)
    rep = verify(b, x, None, ["saf-int", "emulator", "lava"], lava_limit=3)
    row = [c for c in rep.certificate["checks"] if c["check"] == "convention"][0]
    assert row["ok"] and rep.ok and rep.certificate["exact"]
    assert all(p["expected_exact"] and p["spike_mismatches"] == 0 for p in rep.pairs)
    g2 = copy.deepcopy(b.graph)                  # the same bundle with its modes dropped: Lava differs
    for l in g2.spiking_layers:
        l.reset, l.compare = "subtract", ">="
    r2 = stock.run_lava_stock(g2, x)
    assert sum(int((a != c).sum()) for a, c in zip(r2.spikes, reference_batch(g, x)[1])) > 0
