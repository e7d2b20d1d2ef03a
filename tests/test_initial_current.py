"""The two-state layer's initial current U[0] = u0 (export/ir.py Layer.u0: how a bias inside snnTorch Synaptic's
current deploys, export/quantize.py) through every integer form and the proof, on random graphs.

Random dense / conv graphs (export/synthetic.py random_graph, lam = 1/2) made two-state (du = 2047, alpha = 1/2) with
the Synaptic mapping u0 = -(B << F): saf-int (its own P/Y recurrences), the emulator, ONNX (onnxruntime) and Lava
(lava-own) each equal the literal spec oracle (tests/saf_test_helpers/reference_lif.py) spike for spike and readout for readout; the
oracle run with u0 ignored differs (u0 matters); verify catches an emulator that ignores u0; the certificate's
initial_current row fails where u0 is off its 2^G grid (and the forms then really differ), and its U bound counts
|u0|; the bundle carries u0 only where present; the quantizer puts c on the 2^g grid for alpha = 1/4."""
from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch
from saf_test_helpers.graphs import certified_bundle

from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.deploy.backends.registry import BACKENDS  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.export.bundle.store import WEIGHTS, BundleError, load_graph, read_bundle  # noqa: E402
from saf.export.ir import Feedback, Graph  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.certificate import certify  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402


def synaptic_graph(arch: str, recurrent: bool = False, seed: int = 3) -> Graph:
    """random_graph with every spiking layer two-state (du = 2047: alpha = 1/2) and the Synaptic bias mapping
    B = c, u0 = -(c << F) (c: random_graph's bias, doubled so it is what alpha = 1/2 makes of an integer b); 4-bit
    input, so the carried current of the graded first layer keeps |V| within 24 bits (certificate exact)."""
    g = copy.deepcopy(random_graph(arch, T=6, lam=0.5, seed=seed))
    g.input_bits = 4
    for l in g.spiking_layers:
        l.du = 2047
        l.bias = 2 * l.bias
        l.u0 = -(l.bias << l.frac_bits)
    if recurrent:
        n = g.spiking_layers[-1].n_out
        g.feedback.append(Feedback(src=len(g.spiking_layers) - 1, dst=len(g.spiking_layers) - 1, kind="dense",
                                   weight=np.random.default_rng(7).integers(-30, 31, (n, n))))
    return g


def without_u0(g: Graph) -> Graph:
    g = copy.deepcopy(g)
    for l in g.spiking_layers:
        l.u0 = None
    return g


def _check(name, r, R, S, P=None):
    np.testing.assert_array_equal(r.readout, R, err_msg=name)
    for li, (a, b) in enumerate(zip(r.spikes, S)):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} spikes, layer {li}")
    if P is not None and r.potentials is not None:
        for li, (a, b) in enumerate(zip(r.potentials, P)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} potentials, layer {li}")


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_every_integer_form_equals_the_oracle_with_an_initial_current(arch, recurrent):
    g = synaptic_graph(arch, recurrent)
    assert all(l.has_initial_current for l in g.spiking_layers)
    x = random_inputs(g, 6, seed=1)
    R, S, P = reference_batch(g, x)
    assert all(0.03 < float(s.mean()) < 0.97 for s in S), "the test must exercise spikes and resets"
    R0, S0, _ = reference_batch(without_u0(g), x)             # not vacuous: u0 changes the network
    assert not all(np.array_equal(a, b) for a, b in zip(S, S0))
    runs = {"saf-int": run_saf_int(g, x, record_potentials=True),
            "emulator": emulate(g, x, record_potentials=True),
            "onnx": run_onnx(build_onnx_model(g).SerializeToString(), g, x)}
    for name, r in runs.items():
        _check(name, r, R, S, P)
    assert runs["saf-int"].info["potentials_exact"]
    cert = certify(g)
    assert cert.exact, cert.format()
    rows = [c for c in cert.checks if c.check == "initial_current"]
    assert len(rows) == len(g.spiking_layers) and all(c.ok for c in rows)


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_lava_own_equals_the_oracle_with_an_initial_current(arch):
    """lava-own's SoftResetLIF sets u to u0 at the start of every sample (3 samples streamed through one network)."""
    g = synaptic_graph(arch)
    x = random_inputs(g, 3, seed=2)
    R, S, _ = reference_batch(g, x)
    _check("lava-own", BACKENDS["lava-own"].runner(None, g, x, True, False, False), R, S)


def test_verify_catches_a_backend_that_starts_the_current_at_zero(tmp_path):
    g = synaptic_graph("dense", recurrent=True)
    b = certified_bundle(tmp_path, g)
    x = random_inputs(g, 20, seed=1)
    rep = verify(b, x, None, ["saf-int", "emulator", "onnx"])
    assert rep.ok and rep.certificate["exact"] and all(p["spike_mismatches"] == 0 for p in rep.pairs)
    bad = verify(b, x, None, ["saf-int", "emulator", "onnx"], fault="initial-current")
    assert not bad.ok
    faulty = [p for p in bad.pairs if "emulator[initial-current]" in (p["a"], p["b"])]
    assert faulty and all(p["expected_exact"] and p["spike_mismatches"] > 0 for p in faulty)


def test_initial_current_row_fails_off_its_grid_and_the_forms_then_differ():
    """u0 = -(c << F) + 1 (not a multiple of 2^G = 2^6): the row says NO, and the truncating LIF current does
    drift from saf-int's exact accumulation (the row is not vacuous)."""
    g = synaptic_graph("dense")
    for l in g.spiking_layers:
        l.u0 = l.u0 + 1
    cert = certify(g)
    rows = [c for c in cert.checks if c.check == "initial_current"]
    assert not cert.exact and rows and not any(c.ok for c in rows) and "2^6" in rows[0].detail
    x = random_inputs(g, 20, seed=1)
    a, b = run_saf_int(g, x, record_potentials=True), emulate(g, x, record_potentials=True)
    assert any(not np.array_equal(p, q) for p, q in zip(a.potentials, b.potentials))


def test_the_bounds_count_the_initial_current():
    """A u0 of 2^22 on one neuron: the U register bound (current_reg) and |V| (state_24bit) include it and fail,
    where the same layer without u0 passes both."""
    g = synaptic_graph("dense")
    l = g.spiking_layers[0]
    l.u0 = np.zeros_like(l.bias)
    l.u0[0] = -(1 << 22) * 2
    rows = {c.check: c for c in certify(g).checks if c.layer == l.name}
    assert not rows["current_reg"].ok and "|u0| = 8,388,608" in rows["current_reg"].detail
    assert not rows["state_24bit"].ok
    ok = {c.check: c for c in certify(without_u0(g)).checks if c.layer == l.name}
    assert ok["current_reg"].ok and ok["state_24bit"].ok


def test_bundle_carries_u0_only_where_present(tmp_path):
    g = synaptic_graph("conv")
    g.spiking_layers[1].u0 = None
    b = certified_bundle(tmp_path, g)
    layers = json.loads((b.path / "manifest.json").read_text())["layers"]
    assert [l.get("u0") for l in layers] == [True, None, True, None]
    with np.load(b.path / "weights.npz") as z:
        assert sorted(k for k in z.files if k.endswith("_u0")) == ["layer0_u0", "layer2_u0"]
    back = load_graph(b.path)
    for l, m in zip(g.spiking_layers, back.spiking_layers):
        assert (l.u0 is None and m.u0 is None) or np.array_equal(l.u0, m.u0)
    nb = certified_bundle(tmp_path, without_u0(g), "plain")
    assert all("u0" not in l for l in json.loads((nb.path / "manifest.json").read_text())["layers"])
    manifest, files = read_bundle(b.path)              # the checked bytes, then layer0_u0 dropped from them
    with np.load(io.BytesIO(files[WEIGHTS])) as z:
        arrays = {k: z[k] for k in z.files if k != "layer0_u0"}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files[WEIGHTS] = buf.getvalue()
    with pytest.raises(BundleError, match=r"missing array layer0_u0") as e:
        load_graph(b.path, manifest, files)
    assert "\n" not in str(e.value)


def _float_net(alpha: float, bias: float):
    from saf.export.fold.snn import FloatLayer
    rng = np.random.default_rng(0)
    fc = FloatLayer("fc1", "dense", rng.normal(0, 0.3, (12, 16)), np.full(12, bias) * rng.uniform(0.5, 1, 12),
                    (16,), (12,), syn_decay=alpha)
    ro = FloatLayer("readout", "readout", rng.normal(0, 0.3, (4, 12)), np.zeros(4), (12,), (4,))
    return [fc, ro]


def _quantize(layers, alpha_fire: float = 1.0):
    from saf.export.quantize import quantize
    from saf.hw_targets import get_target
    return quantize(layers, [], T=4, lam=0.5, theta=1.0, target=get_target("loihi2"), input_scale=16.0,
                    input_bits=5, input_signed=False, input_exact=True, dsr_alpha=alpha_fire)


def test_quantizer_puts_the_synaptic_bias_on_its_exact_grid():
    """alpha = 1/4 (j = 2), T = 4, lam = 1/2: F = j(T-1) = 6, G = max(jT, j + k(T-1)) = 8, so c = b s / (1 - alpha)
    is rounded to multiples of 2^(G - F) = 4; u0 = -(c << F); the certificate is exact and saf-int == emulator."""
    g, rep = _quantize(_float_net(0.25, 0.3))
    l = g.spiking_layers[0]
    assert l.frac_bits == 6 and l.du == 4095 - 1024
    fl = _float_net(0.25, 0.3)[0]
    c = fl.bias * l.scale / 0.75
    assert np.array_equal(l.bias, (np.rint(c / 4) * 4).astype(np.int64)) and l.bias.any()
    assert np.array_equal(l.u0, -(l.bias << 6)) and rep.layers[0]["initial_current_bias_step"] == 4
    cert = certify(g)
    assert cert.exact, cert.format()
    x = np.random.default_rng(1).integers(0, 32, (40, 16))
    a, b = run_saf_int(g, x, record_potentials=True), emulate(g, x, record_potentials=True)
    assert all(np.array_equal(p, q) for p, q in zip(a.potentials, b.potentials)) and a.spikes[0].any()
    g0, _ = _quantize(_float_net(0.25, 0.0))                  # no bias: no initial current, as before
    assert not g0.spiking_layers[0].has_initial_current and g0.spiking_layers[0].u0 is None


def test_quantizer_refuses_a_synaptic_bias_with_alpha_firing_in_one_line():
    from saf.export.quantize import QuantizeError
    with pytest.raises(QuantizeError, match="fc1") as e:
        _quantize(_float_net(0.5, 0.3), alpha_fire=0.5)
    assert "\n" not in str(e.value) and "bias" in str(e.value)
