"""Issue 29 defects 7-11, each shown by a test that failed on the code before its fix:
7  Loihi 1 refuses a two-state layer with an initial current u0 (hw_targets rule neuron_model), in one line naming
   the layer and what to change;
8  a CubaLIF's current order (snnTorch's / Norse's v[t] + syn[t], or NIR's Euler v[t] + syn[t-1]) is said in the
   import's assumed line and picked by --current-order; NIR's order is refused in one line (no one-step delay);
9  `saf bench infer --peers` rebuilds snnTorch layers with their own reset, current and feedback (a zero-reset
   net's snnTorch peer agrees exactly), and calls a peer it cannot rebuild "not comparable";
10 the certificate's convention row says it is a declaration and a first-spike readout has no row that cannot fail;
11 every `saf` graph-metadata value is checked at import: one line naming the file, key and allowed values, exit 2.
Small nets (snnTorch's own export_to_nir, the real nir package) on sklearn digits."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from saf_test_helpers import nir_nets as N
from saf.deploy.main import main  # noqa: E402


def _snntorch_graph(net):
    from snntorch.export_nir import export_to_nir
    with torch.no_grad():
        return export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])


def _one_line_exit_2(argv, capsys, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


# --- 8: the current order of a CubaLIF ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synaptic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuba") / "synaptic.nir"
    N.export_snntorch(N.synaptic_net("zero", alpha=0.5, beta=0.5), path)
    return path


def test_the_current_order_is_said_in_the_assumed_line(synaptic_file, tmp_path, capsys):
    assert main(["import", str(synaptic_file), "--out", str(tmp_path / "run")]) == 0
    assumed = [l for l in capsys.readouterr().out.splitlines() if l.startswith("assumed:")]
    assert len(assumed) == 1 and "--current-order snntorch" in assumed[0] and "syn[t]" in assumed[0]
    assert "Norse's LIFCell" in assumed[0] and "--current-order nir" in assumed[0]
    # given as a flag, nothing is assumed about it
    assert main(["import", str(synaptic_file), "--out", str(tmp_path / "run2"), "--current-order", "snntorch"]) == 0
    assert "--current-order" not in capsys.readouterr().out


def test_nir_current_order_is_refused_in_one_line(synaptic_file, tmp_path, capsys):
    out = tmp_path / "run"
    _one_line_exit_2(["import", str(synaptic_file), "--out", str(out), "--current-order", "nir"], capsys,
                     str(synaptic_file), "CubaLIF", "syn[t-1]", "one-step delay", "--current-order snntorch")
    assert not out.exists()


def test_a_net_without_current_assumes_no_order(tmp_path, capsys):
    path = tmp_path / "leaky.nir"
    N.export_snntorch(N.snntorch_net("zero"), path)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    assert "current-order" not in capsys.readouterr().out


# --- 11: graph metadata values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,allowed", [
    ("encoder", "bogus", "constant, rate, latency"), ("reset", "soft", "subtract, subtract-undecayed, zero"),
    ("compare", ">=", "gt, ge"), ("dataset", "imagenet", "digits, iris"), ("T", 0, "an integer >= 1"),
    ("T", 2.5, "an integer >= 1"), ("dt", -1, "a positive finite number"), ("readout", "max", "sum, leaky-sum"),
    ("current_order", "later", "snntorch, nir"), ("format", "saf-nir-9", "'saf-nir-1'"),
    ("method", "sgd", "saf-e"), ("lam", 2.0, "(0, 1]")])
def test_a_bad_metadata_value_is_refused_at_import(key, value, allowed, tmp_path, capsys):
    g = _snntorch_graph(N.snntorch_net("zero"))
    g.metadata = {"saf": json.dumps({"format": "saf-nir-1", key: value})}
    path = tmp_path / "bad.nir"
    nir.write(str(path), g)
    out = tmp_path / "run"
    _one_line_exit_2(["import", str(path), "--out", str(out)], capsys, str(path), f"'{key}'", repr(value), allowed)
    assert not out.exists()


def test_good_metadata_values_still_import(tmp_path, capsys):
    g = _snntorch_graph(N.snntorch_net("zero"))
    g.metadata = {"saf": json.dumps({"format": "saf-nir-1", "encoder": "rate", "reset": "zero", "compare": "gt",
                                     "dataset": "digits", "T": 4, "dt": 1e-4, "method": None})}
    path = tmp_path / "good.nir"
    nir.write(str(path), g)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    assert "T 4" in capsys.readouterr().out


# --- 7: Loihi 1 and an initial current ---------------------------------------------------------------------------

def _two_state_graph(u0: bool):
    """A random dense graph (export/synthetic.py) made two-state (alpha = 1/2) with, or without, the initial
    current u0 = -(B << F) that a bias inside snnTorch Synaptic's current deploys as (export/quantize.py)."""
    import copy
    from saf.export.synthetic import random_graph
    g = copy.deepcopy(random_graph("dense", T=6, lam=0.5, seed=3))
    for l in g.spiking_layers:
        l.du, l.reset, l.compare = 2047, "zero", ">"          # Loihi 1's own reset and compare
        l.u0 = -(l.bias << l.frac_bits) if u0 else None
    return g


def test_loihi1_refuses_an_initial_current_in_one_line_naming_the_layer():
    from saf.export.resources import describe
    from saf.hw_targets import check, get_target
    g = _two_state_graph(u0=True)
    first = g.spiking_layers[0].name
    v = [x for x in check(describe(g), get_target("loihi1")) if x.rule == "neuron_model"]
    assert len(v) == 1 and "\n" not in v[0].message
    assert f"an initial synaptic current (layer {first}: U[0] = u0 != 0" in v[0].message
    assert "--target loihi2" in v[0].message and "without a bias" in v[0].message
    # Loihi 2 holds it; without u0 Loihi 1 has no such complaint
    assert not any("initial synaptic current" in x.message for x in check(describe(g), get_target("loihi2")))
    plain = _two_state_graph(u0=False)
    assert not any("initial synaptic current" in x.message for x in check(describe(plain), get_target("loihi1")))


# --- 9: the snnTorch peer of `saf bench infer --peers` --------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return N.digits()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """name -> the imported SpikingNet (float64) of an untrained snnTorch net (nir_nets) with its weights x 4 (so
    that every layer fires often), read with the reset snnTorch computes: Leaky zero, RLeaky subtract, Synaptic
    subtract, and Synaptic zero (not comparable: snnTorch's Synaptic zero-reset zeroes the step's input too)."""
    from saf.train.checkpoint import load_model
    root, out = tmp_path_factory.mktemp("peers"), {}
    nets = {"leaky-zero": (N.snntorch_net("zero"), "zero"),
            "rleaky-subtract": (N.snntorch_net("subtract", recurrent=True), "subtract-undecayed"),
            "synaptic-subtract": (N.synaptic_net("subtract"), "subtract-undecayed"),
            "synaptic-zero": (N.synaptic_net("zero"), "zero")}
    for name, (net, reset) in nets.items():
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() > 1:
                    p.mul_(4)
        N.export_snntorch(net, root / f"{name}.nir")
        assert main(["import", str(root / f"{name}.nir"), "--out", str(root / name), "--reset", reset]) == 0
        out[name] = load_model(root / name)[0].double().eval()
    return out


def _rebuild_f64(sn):
    for m in sn.layers + sn.lifs + [sn.readout]:
        m.double()
    return sn


@pytest.mark.parametrize("name", ["leaky-zero", "rleaky-subtract", "synaptic-subtract"])
def test_snntorch_peer_is_exact_for_the_modes_snntorch_computes(name, imported, digits):
    """Both sides in float64: the snnTorch rebuild is the torch LIF form, prediction for prediction (100 %), and its
    readout equals it (float64 rounding apart)."""
    from saf.deploy.bench.peers import SnnTorchNet
    net = imported[name]
    x = digits.x_test.double()
    ref = net.infer(x, N.T, "lif")[0]
    sn = _rebuild_f64(SnnTorchNet(net))
    got = sn(x, N.T)
    assert sn.exact
    assert torch.equal(got.argmax(1), ref.argmax(1))
    assert float((got - ref).abs().max()) <= 1e-9 * float(ref.abs().max())


def test_the_bench_peer_of_a_zero_reset_net_predicts_as_its_lif_form(imported, digits):
    """As the bench runs it (float32): the old Leaky(subtract) rebuild agreed on 87 % of the digits test set; the
    zero-reset rebuild is the same network (>= 99 %: float32 rounding may flip a near tie, float64 above is exact)."""
    import copy
    from saf.deploy.bench.peers import SnnTorchNet
    net = copy.deepcopy(imported["leaky-zero"]).float()
    x = digits.x_test.float()
    ref = net.infer(x, N.T, "lif")[0].argmax(1)
    assert float((SnnTorchNet(net)(x, N.T).argmax(1) == ref).double().mean()) >= 0.99


def test_the_old_subtract_rebuild_of_a_zero_reset_net_is_caught(imported, digits):
    """Fault (the old code): every layer as Leaky(subtract, reset_delay=False): not the zero-reset network."""
    import snntorch as snn
    from saf.deploy.bench.peers import SnnTorchNet
    net = imported["leaky-zero"]
    x = digits.x_test.double()
    ref = net.infer(x, N.T, "lif")[0].argmax(1)
    sn = SnnTorchNet(net)
    sn.lifs = [snn.Leaky(beta=float(net.lam), threshold=float(net.theta), reset_mechanism="subtract",
                         reset_delay=False) for _ in sn.lifs]
    assert float((_rebuild_f64(sn)(x, N.T).argmax(1) == ref).double().mean()) < 0.95


def test_a_peer_snntorch_cannot_rebuild_is_not_comparable(imported):
    from saf.deploy.bench.peers import SnnTorchNet
    with pytest.raises(ValueError, match="not comparable: spiking layer 0: reset 'zero'"):
        SnnTorchNet(imported["synaptic-zero"])


def test_the_peer_table_says_which_rebuild_is_approximate():
    from saf.deploy.bench.peers import format_peers
    row = {"peer": "snntorch", "available": True, "samples": 10, "seconds": 1.0, "samples_per_s": 10.0,
           "accuracy": 0.9, "agree_with_emulator": 0.9, "rebuild": "approximate"}
    r = {"bundle": "b", "dataset": "digits", "samples": 10, "T": 6, "repeats": 1,
         "threads": {"torch": 1, "numba": 1, "onnxruntime": "default"}, "rows": [row]}
    assert "snntorch: an approximate rebuild" in format_peers(r)
    assert "approximate rebuild" not in format_peers(dict(r, rows=[dict(row, rebuild="exact")]))


# --- 10: declarations are not presented as proofs ----------------------------------------------------------------

def test_the_convention_row_is_a_declaration_and_still_fails_on_another_declared_mode():
    from saf.export.ir import Convention
    from saf.export.proof.certificate import certify
    from saf.export.proof.saf_int import MODES as SAF_INT_MODES
    from saf.export.synthetic import random_graph
    g = random_graph("dense", T=4, lam=0.5, seed=0)
    c = certify(g)
    row = [r for r in c.checks if r.check == "convention"][0]
    assert row.ok and row.detail.startswith("declared, not run:")
    assert "[decl] convention" in c.format() and "[ok] convention" not in c.format()
    # fault: a backend declaring one fixed neuron (hard reset) where the layers subtract: the row fails
    bad = certify(g, {"saf-int": SAF_INT_MODES, "fixed": Convention(">=", "zero")})
    row = [r for r in bad.checks if r.check == "convention"][0]
    assert not row.ok and not bad.exact and row.detail.startswith("declared: fixed")
    assert "[NO] convention" in bad.format()


def test_a_first_spike_readout_has_no_row_that_cannot_fail():
    """The old row was T <= 2^23 - 1: always true. R in [0, T] is now a note."""
    import copy
    from saf.export.proof.certificate import certify
    from saf.export.synthetic import random_graph
    g = copy.deepcopy(random_graph("dense", T=4, lam=0.5, seed=0))
    g.readout.first_spike = True
    c = certify(g)
    assert not any(r.check == "readout" for r in c.checks)
    assert any("first-spike readout" in i and "[0, T = 4]" in i for i in c.info)
