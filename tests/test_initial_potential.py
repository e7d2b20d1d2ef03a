"""Layer.v0, the initial membrane potential V'[0] (DSR's alpha firing, docs/design.md#initial-potential-and-alpha-firing), in every
integer form: the spec oracle, the emulator, the exact SAF form, ONNX and the own-model Lava graph
agree spike for spike; ignoring v0 in any of them is caught; the certificate checks its decay is exact;
the manifest carries it (omitted when 0); lava (Lava's stock LIF) refuses it in one line naming lava-own."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.export.bundle.store import load_graph, write_bundle  # noqa: E402
from saf.export.proof.certificate import certify  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402


def with_v0(g, frac: float = 0.5, multiple_of: int = None):
    """Every spiking layer starts at round(frac * TH) << F (a multiple of 2^(kT) unless told)."""
    for l in g.spiking_layers:
        c = int(round(frac * l.threshold))
        l.v0 = (c << l.frac_bits) if multiple_of is None else c * multiple_of
    return g


def mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a, b))


@pytest.mark.parametrize("arch,feedback,lam,T", [("dense", False, 0.5, 6), ("dense", True, 1.0, 8),
                                                  ("conv", False, 0.5, 5), ("dense", True, 0.5, 6)])
def test_every_integer_form_equals_the_oracle_with_v0(arch, feedback, lam, T):
    g = with_v0(random_graph(arch, T=T, lam=lam, seed=3, feedback=feedback))
    x = random_inputs(g, 12, seed=1)
    r, s, _ = reference_batch(g, x)
    em = emulate(g, x)
    np.testing.assert_array_equal(em.readout, r)
    assert mismatches(em.spikes, s) == 0
    sf = run_saf_int(g, x)
    np.testing.assert_array_equal(sf.readout, r)
    assert mismatches(sf.spikes, s) == 0
    on = run_onnx(build_onnx_model(g).SerializeToString(), g, x)
    np.testing.assert_array_equal(on.readout, r)
    assert mismatches(on.spikes, s) == 0
    ip = [c for c in certify(g).checks if c.check == "initial_potential"]
    assert len(ip) == len(g.spiking_layers) and all(c.ok for c in ip)
    # and v0 changes the network: the same graph without it spikes differently (the comparisons can fail)
    em0 = emulate(g, x, initial_potential=False)
    assert mismatches(em0.spikes, s) > 0
    for l in g.spiking_layers:
        l.v0 = 0
    assert mismatches(run_saf_int(g, x).spikes, s) > 0
    assert mismatches(run_onnx(build_onnx_model(g).SerializeToString(), g, x).spikes, s) > 0


def test_negative_v0_and_potentials():
    g = with_v0(random_graph("dense", T=6, lam=0.5, seed=5), frac=-0.25)
    x = random_inputs(g, 8, seed=2)
    r, s, p = reference_batch(g, x)
    sf = run_saf_int(g, x, record_potentials=True)
    assert mismatches(sf.spikes, s) == 0 and sf.info["potentials_exact"]
    for a, b in zip(sf.potentials, p):
        np.testing.assert_array_equal(a, b)


def test_certificate_flags_a_v0_whose_decay_truncates():
    """v0 = -1 at F = 0, lam = 1/2: the 12-bit decay truncates it to 0 where the exact form has -1/2.
    The certificate says not exact (initial_potential), and the forms do differ on the tie x = TH."""
    from saf.export.ir import Graph, Layer

    lay = Layer("fc0", "dense", np.array([[1]]), np.array([0]), (1,), (1,), threshold=4, frac_bits=0, v0=-1)
    ro = Layer("readout", "readout", np.array([[1]]), np.array([0]), (1,), (1,), frac_bits=0)
    g = Graph(layers=[lay, ro], T=1, lam=0.5, decay=2048, input_shape=(1,), input_scale=1.0, input_bits=4)
    cert = certify(g)
    assert not cert.exact
    assert [c.check for c in cert.checks if not c.ok] == ["initial_potential"]
    x = np.array([[4]])
    assert emulate(g, x).spikes[0][0, 0, 0] and not run_saf_int(g, x).spikes[0][0, 0, 0]
    lay.v0 = -2                                        # a multiple of 2^(kT) = 2: exact, and equal
    assert certify(g).exact
    assert not emulate(g, x).spikes[0][0, 0, 0] and not run_saf_int(g, x).spikes[0][0, 0, 0]


def test_state_bound_counts_v0():
    g = random_graph("dense", T=6, lam=1.0, seed=1)
    base = {c.layer: c.detail for c in certify(g).checks if c.check == "state_24bit"}
    g.spiking_layers[0].v0 = (1 << 23) - 1
    cert = certify(g)
    bad = [c for c in cert.checks if c.check == "state_24bit" and not c.ok]
    assert [c.layer for c in bad] == [g.spiking_layers[0].name] and base


def test_manifest_carries_v0(tmp_path):
    g = with_v0(random_graph("dense", T=6, lam=0.5, seed=3))
    write_bundle(g, tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [lm.get("v0") for lm in m["layers"]] == [l.v0 for l in g.spiking_layers] + [None]
    back = load_graph(tmp_path / "b")
    assert [l.v0 for l in back.layers] == [l.v0 for l in g.layers]
    g0 = random_graph("dense", T=6, lam=0.5, seed=3)
    write_bundle(g0, tmp_path / "c")
    m0 = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert all("v0" not in lm for lm in m0["layers"])            # omitted when 0: old bundles unchanged
    assert [l.v0 for l in load_graph(tmp_path / "c").layers] == [0, 0, 0]


def test_lava_own_model_with_v0():
    from saf.deploy.lava.backend import run_lava

    g = with_v0(random_graph("dense", T=6, lam=0.5, seed=3, feedback=True))
    x = random_inputs(g, 4, seed=1)
    r, s, _ = reference_batch(g, x)
    res = run_lava(g, x)
    np.testing.assert_array_equal(res.readout, r)
    assert mismatches(res.spikes, s) == 0


def test_lava_stock_refuses_v0():
    from saf.deploy.lava.stock import StockModelError, stock_problems

    g = with_v0(random_graph("dense", T=6, lam=0.5, seed=3))
    assert any("initial potential" in p for p in stock_problems(g))
    g0 = random_graph("dense", T=6, lam=0.5, seed=3)
    assert not any("initial potential" in p for p in stock_problems(g0))
    assert StockModelError
    # through the registry: `lava` (Lava's stock LIF) refuses it in one line naming lava-own, which runs it
    from saf.deploy.backends.registry import BackendError, Bundle, run_backend
    x = random_inputs(g, 2)
    with pytest.raises(BackendError, match=r"^lava cannot run this network: layer \S+: initial potential v0 = "
                                           r".*; use lava-own \(the toolchain's own Lava Processes\)$"):
        run_backend("lava", Bundle(None, {}, g), x)
    np.testing.assert_array_equal(run_backend("lava-own", Bundle(None, {}, g), x).readout, reference_batch(g, x)[0])
