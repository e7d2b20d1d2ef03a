"""Export that fits by itself (export/pipeline/fit.py) and the honest --approximate mode
(deploy/verify/approx.py), on the pinned digits demo network:
- the MNIST case without MNIST: a conv1 bias the calibrated scale makes too large for Loihi's exact bias
  range (the old export refused with "(rule bias)"); default flags now give an EXACT bundle whose
  integer forms verify spike for spike;
- T = 16 at lam 0.5 (the state needs k(T-1) = 15 fractional bits): no exact configuration; the refusal
  names the largest exact T and --approximate; --approximate writes a NOT EXACT bundle (everywhere),
  its integer LIF forms still agree spike for spike, and verify measures the agreement with the float model."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from saf.deploy.backends.registry import Bundle, run_backend
from saf.deploy.main import main
from saf.deploy.verify import verify
from saf.export.bundle.store import read_manifest
from saf.export.resources import check_resources
from saf.hw_targets import get_target
from saf.hw_targets import rules as R
from saf.train.checkpoint import load_model, save_checkpoint

GOLDEN = Path(__file__).parent / "golden" / "demo" / "model.safetensors"


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def big_bias(tmp_path_factory):
    """The demo net with conv1's channel-0 bias at 3.5: at the calibrated input scale (16) its integer
    bias b * TH / theta is 8,564 > 8,190, beyond even Loihi's 2^1-grid bias range."""
    net, spec, cfg = load_model(GOLDEN)
    with torch.no_grad():
        net.blocks[0].bias[0] = 3.5
    p = tmp_path_factory.mktemp("fit") / "big-bias.safetensors"
    save_checkpoint(p, net, cfg)
    return p


def _quantized(ckpt, target):
    """The folded network quantized for `target` at the digits calibration (export's own steps)."""
    from saf.export.fold.snn import fold_network
    from saf.export.quantize import input_quantization, quantize

    net, spec, cfg = load_model(ckpt)
    layers, fb = fold_network(net.double())
    scale, bits, signed, exact = input_quantization(1.0, 0.0, 16)
    return quantize(layers, fb, T=6, lam=0.5, theta=1.0, target=target, input_scale=scale, input_bits=bits,
                    input_signed=signed, input_exact=exact)


def test_old_quantization_of_the_big_bias_net_is_refused_by_the_bias_rule(big_bias):
    """Without the fit (a target with no bias format quantizes as export always did) Loihi 2 refuses conv1."""
    from saf.export.pipeline.fit import ExportError, check_fit

    l2 = get_target("loihi2")
    old, rep = _quantized(big_bias, dataclasses.replace(l2, bias_mantissa_max=None, bias_exp_max=None))
    assert rep.layers[0]["threshold_lowered_for_bias"] is None and np.abs(old.layers[0].bias).max() > 8190
    with pytest.raises(ExportError, match=r"layer conv1: \|bias\| 8,5\d\d is not exact on loihi2.*\(rule bias\)"):
        check_fit(old, l2, "conv-digits")
    new, rep = _quantized(big_bias, l2)
    lo = rep.layers[0]
    assert lo["threshold_lowered_for_bias"][0] == old.layers[0].threshold > lo["threshold"]
    assert lo["bias_zero_bits"] == 1 and np.all(new.layers[0].bias % 2 == 0)
    assert 4095 < np.abs(new.layers[0].bias).max() <= 8190           # the exponent's spare bit is used
    assert not [v for v in check_resources(new, l2)[1] if v.rule == "bias"]


def test_default_flag_export_fits_exactly_and_verifies(big_bias, tmp_path, capsys):
    out = tmp_path / "b"
    rc, text, err = _cli(capsys, "export", big_bias, "--target", "loihi", "--out", out, "--calibrate-data", "digits")
    assert rc == 0, err
    assert "certificate: EXACT" in text and "chose EXACT" in text
    assert re.search(r"fit: accuracy on 512 calibration \(train\) samples: integer 0\.\d+, float 0\.\d+ "
                     r"\(change [+-]0\.\d+\)", text)
    m = read_manifest(out)
    assert m["certificate"]["exact"] and m["fit"]["searched"] >= 2
    assert m["fit"]["thresholds_lowered_for_bias"][0][0] == "conv1" and m["fit"]["bias_grid"] == {"conv1": 1}
    assert all(c["exact"] is False or c["accuracy"] is not None for c in m["fit"]["candidates"])
    assert m["fit"]["accuracy"] == max(c["accuracy"] for c in m["fit"]["candidates"] if c["exact"])
    b = Bundle.load(out)
    from saf.deploy.verify.inputs import load_inputs
    xq, y, _ = load_inputs(b, None, None, 120)
    rep = verify(b, xq, y, ["saf-int", "emulator", "onnx"])
    assert rep.ok and rep.certificate["exact"] and rep.approximate is None
    assert all(p["expected_exact"] and p["spike_mismatches"] == 0 for p in rep.pairs)
    bad = verify(b, xq, y, ["saf-int", "emulator"], fault="lsb")        # the comparison has teeth
    assert not bad.ok
    # a bundle claiming --approximate while its certificate is exact is a contradiction verify reports
    b.graph.meta["approximate"] = {"why": "tampered"}
    assert any("re-derives exact" in f for f in verify(b, xq[:8], y[:8], ["emulator", "onnx"]).failures)


def test_bias_rule_with_a_grid_matches_lavas_stock_encoder():
    """check_bias at F = 6 accepts exactly the biases Lava's stock LIF holds as bias_mant << bias_exp
    (deploy/lava/stock_encode.py, an independent encoder)."""
    from saf.deploy.lava.stock_encode import EncodingError, encode_bias
    from saf.hw_targets.base import NetDesc

    l2 = get_target("loihi2")
    for b in (4095, 4096, 4097, 8188, 8190, 8191, 8192, 9000):
        z = R.bias_grid(l2, 6, b)
        zb = 0 if b % 2 else 1
        lay = dict(name="fc", kind="dense", in_shape=(4,), out_shape=(4,), n_neurons=4, fan_in=4, n_weights=16,
                   n_synapses=16, max_abs_weight=2, threshold=10, max_abs_bias=b, bias_zero_bits=zb)
        from saf.hw_targets import LayerDesc
        net = NetDesc(layers=[LayerDesc(**lay)], T=6, lam=0.5, decay=2048, frac_bits=6, input_bits=1)
        rule_ok = not R.check_bias(net, l2)
        try:
            encode_bias(np.array([b, -b]), "fc")
            lava_ok = True
        except EncodingError:
            lava_ok = False
        assert rule_ok == lava_ok, b
        assert (z is not None) == (b <= 8190)


@pytest.fixture(scope="module")
def t16(tmp_path_factory):
    return tmp_path_factory.mktemp("t16")


def test_t16_is_refused_naming_the_largest_exact_T_and_approximate(t16, capsys):
    out = t16 / "refused"
    rc, text, err = _cli(capsys, "export", GOLDEN, "--target", "loihi", "--out", out, "--T", 16, "--calibrate-data", "digits")
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "no exact configuration on loihi2 at T = 16, lam 0.5" in err and "--approximate" in err
    assert not out.exists()
    t_max = int(re.search(r"exact at T <= (\d+) for lam 0\.5", err).group(1))
    assert 7 <= t_max < 16
    # the claim holds: T = t_max exports EXACT, T = t_max + 1 is refused (export's own path, not the search's)
    rc, text, err = _cli(capsys, "export", GOLDEN, "--target", "loihi", "--out", t16 / "tmax", "--T", t_max,
                         "--input-scale", 16, "--input-bits", 5, "--approximate")
    assert rc == 0 and "certificate: EXACT" in text, err
    assert "note: --approximate not needed: the bundle is EXACT" in text      # exact wins over the flag
    assert "approximate" not in read_manifest(t16 / "tmax")
    rc, _, err = _cli(capsys, "export", GOLDEN, "--target", "loihi", "--out", t16 / "over", "--T", t_max + 1,
                      "--input-scale", 16, "--input-bits", 5)
    assert rc == 2 and "no exact configuration" in err


def test_t16_approximate_is_not_exact_everywhere_and_verify_measures_it(t16, capsys):
    out = t16 / "approx"
    rc, text, err = _cli(capsys, "export", GOLDEN, "--target", "loihi", "--out", out, "--T", 16,
                         "--calibrate-data", "digits", "--approximate")
    assert rc == 0, err
    assert "certificate: NOT EXACT" in text and "certificate: EXACT" not in text and "approximate: NOT EXACT by request" in text
    assert "deployed: NOT EXACT" in text and "quantized" not in text.split("accuracy on")[-1]
    m = read_manifest(out)
    assert not m["certificate"]["exact"] and m["approximate"]["frac_bits"] == 6
    assert {r.split(" (")[0] for r in m["certificate"]["reasons"]} == {"frac_bits"}
    assert len(m["certificate"]["reasons"]) == 3                       # each spiking layer's reason
    assert all(l["frac_bits"] == 6 for l in m["layers"])
    rc, info, _ = _cli(capsys, "info", out)
    assert "certificate: NOT EXACT" in info and "approximate (exported with --approximate)" in info
    rc, run_text, _ = _cli(capsys, "run", out, "--limit", 4)
    assert rc == 0 and "approximate bundle (exported with --approximate, certificate NOT EXACT)" in run_text
    vout = t16 / "v"
    rc, vtext, err = _cli(capsys, "verify", out, "--limit", 60, "--lava-limit", 3, "--no-progress", "--out", vout)
    assert rc == 0, vtext + err
    assert "note: saf-int left out of the default backends: the bundle is approximate" in vtext
    assert "certificate (re-derived from the bundle's weights): NOT EXACT -- frac_bits (conv1)" in vtext
    assert "OK   emulator vs onnx on 60: 0 mismatching spikes" in vtext and "(exact required)" in vtext
    assert "OK   emulator vs lava on 3: 0 mismatching spikes" in vtext
    table = vtext.split("agreement with the float model (a measurement)")[1]
    for name in ("conv1", "conv2", "fc3"):
        assert re.search(rf"{name}\s+\d+\.\d+%", table)
    assert re.search(r"same prediction \d+\.\d+%; accuracy float 0\.\d+ -> deployed 0\.\d+ \([+-]0\.\d+\)", table)
    # the integer LIF forms must still agree exactly: an injected fault fails verify on this bundle
    b = Bundle.load(out)
    from saf.deploy.verify.inputs import load_inputs
    xq, y, _ = load_inputs(b, None, None, 40)
    assert not verify(b, xq, y, ["emulator", "onnx"], fault="tie").ok
    # the table measures: the deployed form's own spikes against the float model's (computed here
    # independently) ...
    rep = verify(b, xq, y, ["emulator", "onnx"])
    em, fl = run_backend("emulator", b, xq), run_backend("saf-float", b, xq)
    for row, a, f in zip(rep.approximate["layers"], em.spikes, fl.spikes):
        assert row["agreement"] == pytest.approx(float((a == f).mean()))
    assert min(r["agreement"] for r in rep.approximate["layers"]) < 1.0      # F = 6 does truncate
    # ... and a faulty deployment (hard reset) shows up as lower agreement
    from saf.deploy.backends.registry import BACKENDS, fault_backend
    from saf.deploy.verify.approx import approx_section
    faulty = fault_backend("hard-reset").runner(b, b.graph, xq, True, False, False)
    worse = approx_section(b, xq, y, {"emulator": faulty}, [BACKENDS["emulator"]])
    assert sum(r["agreement"] for r in worse["layers"]) < sum(r["agreement"] for r in rep.approximate["layers"])
