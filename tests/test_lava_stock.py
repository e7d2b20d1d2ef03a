"""lava (simulated Loihi): the integer network on Lava's OWN Processes and fixed-point models (Dense,
Conv, LIFReset's bit-accurate model with only compare and reset overridden), against the literal spec
oracle (tests/saf_test_helpers/reference_lif.py) and, where Loihi's arithmetic departs from the LIF form (the 24-bit
u register wraps), against an independent numpy model of that register. Each comparison is shown
able to fail: the stock compare/reset, an unflipped conv kernel and Lava's default weight
truncation are injected and must change the spikes."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
from lava.proc.lif.models import PyLifResetModelBitAcc

from saf_test_helpers import reference_lif
from saf_test_helpers.reference_lif import reference_batch

import saf.deploy.lava.stock as stock  # noqa: E402
import saf.deploy.lava.stock_encode as enc  # noqa: E402
from saf.deploy.backends.emulator import emulate  # noqa: E402
from saf.deploy.lava.procs.stock_lif import PySoftResetLifBitAcc  # noqa: E402
from saf.deploy.backends.registry import BACKENDS, STOCK_REGISTER, BackendError, Bundle, run_backend  # noqa: E402
from saf.deploy.main import main  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.export.bundle.store import write_bundle  # noqa: E402
from saf.export.onnx_model import save_onnx_model  # noqa: E402
from saf.export.proof.certificate import certify  # noqa: E402
from saf.export.ir import STATE_MAX, Graph, Layer, decay_for  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402

GOLDEN = pathlib.Path(__file__).parent / "golden" / "demo"


def mismatches(a, b) -> int:
    return sum(int((x != y).sum()) for x, y in zip(a, b))


def assert_matches_reference(g, x, res):
    r, s, p = reference_batch(g, x)
    assert res.backend == "lava" and res.readout.dtype == np.int64
    np.testing.assert_array_equal(res.readout, r)
    assert len(res.spikes) == len(s)
    for li, (a, b) in enumerate(zip(res.spikes, s)):
        assert a.shape == b.shape == (len(x), g.T, g.spiking_layers[li].n_out)
        np.testing.assert_array_equal(a, b, err_msg=f"spikes of layer {li}")
    return s, p


def odd_conv_graph():
    """Non-square input (C=2, H=5, W=7), a 3x2 kernel with stride 2: catches W/H or flip mix-ups."""
    rng = np.random.default_rng(11)
    k = rng.integers(-60, 61, size=(3, 2, 3, 2))
    c1 = Layer("conv0", "conv", k, rng.integers(-5, 6, 3), (2, 5, 7), (3, 3, 4), threshold=40, stride=2,
               padding=1)
    fc = Layer("fc1", "dense", rng.integers(-60, 61, size=(6, 36)), rng.integers(-5, 6, 6), (36,), (6,),
               threshold=60)
    ro = Layer("readout", "readout", rng.integers(-60, 61, size=(4, 6)), rng.integers(-9, 10, 4), (6,), (4,))
    return Graph(layers=[c1, fc, ro], T=5, lam=0.5, decay=decay_for(0.5), input_shape=(2, 5, 7),
                 input_scale=16.0, input_bits=5)


# ---------------------------------------------------------------- stock models == spec oracle

@pytest.mark.parametrize("arch,T,lam", [("dense", 6, 0.5), ("conv", 5, 0.5), ("dense", 3, 0.25),
                                        ("dense", 1, 1.0)])
def test_stock_models_match_reference(arch, T, lam):
    g = random_graph(arch, T=T, lam=lam, seed=T + int(10 * lam))
    x = random_inputs(g, 3, seed=2)
    res = stock.run_lava_stock(g, x, chunk_samples=2)
    s, _ = assert_matches_reference(g, x, res)
    if T > 1:
        assert all(0.02 < float(a.mean()) < 0.98 for a in s)
    assert res.info["lava_steps"] == len(g.layers) + 1 + 3 * T - 1


def test_many_samples_stream_through_several_networks(monkeypatch):
    g = random_graph("conv", T=3, lam=0.5, seed=6)
    x = random_inputs(g, 7, seed=6)
    monkeypatch.setattr(stock, "MAX_BUFFER", 64 * (3 * 3 + 5))     # 3 samples per network
    assert stock.samples_per_network(g) == 3
    res = stock.run_lava_stock(g, x, chunk_samples=2)
    assert res.info["networks"] == 3
    assert_matches_reference(g, x, res)


def test_stock_conv_layout_and_flip(monkeypatch):
    g = odd_conv_graph()
    x = random_inputs(g, 3, seed=4)
    s, _ = assert_matches_reference(g, x, stock.run_lava_stock(g, x))
    assert 0.05 < float(s[0].mean()) < 0.95
    # fault: pass torch's cross-correlation kernel to Lava's (true-convolution) Conv unflipped
    monkeypatch.setattr(enc, "conv_weights",
                        lambda k: np.ascontiguousarray(np.asarray(k).transpose(0, 3, 2, 1)).astype(np.int32))
    assert mismatches(stock.run_lava_stock(g, x).spikes, s) > 0


@pytest.mark.parametrize("seed", range(8))
def test_im2col_conv_gives_lavas_integers(seed):
    """The stock Conv's model replaces only Lava's convolution function (procs/stock_conv.py): on odd
    shapes, strides, paddings, dilations and graded (signed) inputs it returns Lava's own
    lava.proc.conv.utils.conv integers, dtype included; the comparison fails on an unflipped kernel."""
    from lava.proc.conv import utils
    from saf.deploy.lava.procs.stock_conv import conv_im2col

    rng = np.random.default_rng(seed)
    kw, kh = (int(v) for v in rng.integers(1, 4, 2))
    stride, pad, dil = (tuple(int(v) for v in rng.integers(lo, hi, 2)) for lo, hi in ((1, 3), (0, 2), (1, 3)))
    w_in = int(rng.integers(dil[0] * (kw - 1) + 1, 10))
    h_in = int(rng.integers(dil[1] * (kh - 1) + 1, 10))
    x = rng.integers(-(1 << 12), 1 << 12, size=(w_in, h_in, int(rng.integers(1, 5)))).astype(np.int32)
    k = rng.integers(-255, 256, size=(int(rng.integers(1, 6)), kw, kh, x.shape[2])).astype(np.int32)
    args = ((kw, kh), stride, pad, dil, 1)
    ref, got = utils.conv(x, k, *args), conv_im2col(x, k, *args)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    if kw * kh > 1:                       # cross-correlation (kernel not flipped) is caught
        assert (conv_im2col(x, np.ascontiguousarray(k[:, ::-1, ::-1, :]), *args) != ref).any()


def tie_reset_graph():
    """TH = 6, IF (lam 1), F = 6. I = 6 gives V[1] == TH << 6 (a tie); I = 5 gives V = 5, 10 (spike),
    then 9 after a subtractive reset but 5 after a hard one, so later spikes depend on the reset."""
    fc = Layer("fc0", "dense", np.array([[1], [2], [3]]), np.array([0, 0, 1]), (1,), (3,), threshold=6)
    ro = Layer("readout", "readout", np.array([[1, 2, 0], [0, 1, 3]]), np.array([0, 1]), (3,), (2,))
    return Graph(layers=[fc, ro], T=6, lam=1.0, decay=0, input_shape=(1,), input_scale=1.0, input_bits=4)


class _StrictCompare(PySoftResetLifBitAcc):       # Lava's stock compare v > vth << 6
    spiking_activation = PyLifResetModelBitAcc.spiking_activation


class _HardReset(PySoftResetLifBitAcc):           # Lava's stock reset v = 0
    reset_voltage = PyLifResetModelBitAcc.reset_voltage


@pytest.mark.parametrize("fault", [PyLifResetModelBitAcc, _StrictCompare, _HardReset])
def test_the_two_overrides_are_what_makes_it_exact(monkeypatch, fault):
    g = tie_reset_graph()
    x = np.array([[6], [9], [3], [5]])
    s, p = assert_matches_reference(g, x, stock.run_lava_stock(g, x))
    assert (p[0] == 6 << 6).sum() >= 2 and s[0].sum() > 10
    monkeypatch.setattr(stock, "PySoftResetLifBitAcc", fault)
    assert mismatches(stock.run_lava_stock(g, x).spikes, s) > 0


def test_voltage_saturates_like_the_ir(monkeypatch):
    """IF, TH = 2^17 - 1 (TH << 6 just below the clip): V reaches the 24-bit clip before firing."""
    fc = Layer("fc0", "dense", np.array([[120], [118]]), np.array([0, 7]), (1,), (2,), threshold=(1 << 17) - 1)
    ro = Layer("readout", "readout", np.array([[1, 0], [0, 1]]), np.array([0, 0]), (2,), (2,))
    g = Graph(layers=[fc, ro], T=12, lam=1.0, decay=0, input_shape=(1,), input_scale=1.0, input_bits=8)
    x = np.array([[250], [200]])
    s, p = assert_matches_reference(g, x, stock.run_lava_stock(g, x))
    assert int(p[0].max()) == STATE_MAX and s[0].any()
    monkeypatch.setattr(reference_lif, "STATE_MAX", 4 * STATE_MAX)
    assert mismatches(reference_batch(g, x)[1], s) > 0


# ---------------------------------------------------------------- weights: nothing silently dropped

@pytest.mark.parametrize("lo,hi,parts,exp", [(0, 255, ["all"], 0), (-255, 0, ["all"], 0),
                                             (-127, 127, ["all"], -1), (-255, 255, ["excitatory", "inhibitory"], 0)])
def test_dense_encoding_round_trips_through_lavas_own_truncation(lo, hi, parts, exp):
    w = np.random.default_rng(hi - lo).integers(lo, hi + 1, size=(20, 30))
    codes = enc.encode_dense(w, "fc")
    assert [c.part for c in codes] == parts and codes[0].weight_exp == exp
    np.testing.assert_array_equal(sum(enc.lava_effective_weights(c) for c in codes), w)
    even = enc.encode_dense(w * 2 if max(-lo, hi) <= 127 else np.sign(w) * (np.abs(w) // 2 * 2), "fc")
    assert len(even) == 1 and even[0].weight_exp == 0


def test_lavas_default_encoding_would_drop_a_bit_and_is_refused():
    w = np.array([[255, -3], [7, -255]])
    naive = [enc.DenseCode(w.astype(np.int32), enc.SignMode.MIXED, 8, 0, "all")]   # Dense's defaults
    assert (enc.lava_effective_weights(naive[0]) != w).sum() == 4
    with pytest.raises(enc.EncodingError, match=r"layer fc: Lava's Dense would hold weight 254 instead of 255"):
        enc.check_dense(naive, w, "fc")
    with pytest.raises(enc.EncodingError, match="exceeds the 8-bit"):
        enc.encode_dense(np.array([[256]]), "fc")


def test_odd_mixed_weights_run_exactly_and_the_default_encoding_would_not(monkeypatch):
    g = random_graph("dense", T=4, lam=0.5, seed=5, wmax=255)
    assert all((l.weight % 2).any() and np.abs(l.weight).max() > 127 for l in g.layers)
    x = random_inputs(g, 3, seed=3)
    res = stock.run_lava_stock(g, x)
    s, _ = assert_matches_reference(g, x, res)
    enc_fc0 = res.info["models"][1]["parts"]
    assert [p["encoding"] for p in enc_fc0[:2]] == ["excitatory: EXCITATORY num_weight_bits=8 weight_exp=0, "
                                                    "inhibitory: INHIBITORY num_weight_bits=8 weight_exp=0"] * 2
    naive = lambda w, name: [enc.DenseCode(np.asarray(w, np.int32), enc.SignMode.MIXED, 8, 0, "all")]  # noqa: E731
    monkeypatch.setattr(enc, "encode_dense", naive)
    bad = stock.run_lava_stock(g, x)
    assert mismatches(bad.spikes, s) > 0


def test_bias_encoding():
    mant, exp = enc.encode_bias(np.array([0, 4095, -4096, 4096, -8192, 8190]), "fc")
    np.testing.assert_array_equal(mant << exp, np.array([0, 4095, -4096, 4096, -8192, 8190]) << 6)
    assert list(exp) == [6, 6, 6, 7, 7, 7]
    with pytest.raises(enc.EncodingError, match="layer fc: bias 4097 .neuron 0."):
        enc.encode_bias(np.array([4097]), "fc")


# ---------------------------------------------------------------- the current register wraps

def wrap24(a: np.ndarray) -> np.ndarray:
    """Two's-complement 24-bit wrap (Loihi's u register)."""
    return ((np.asarray(a, dtype=np.int64) + (1 << 23)) % (1 << 24)) - (1 << 23)


def loihi_register_model(g: Graph, xq: np.ndarray, wrap=wrap24) -> tuple:
    """Independent numpy model of Loihi's CUBA registers for dense nets (du = 4095, F = 6):
    u = wrap24(W s_in << 6); v = clip(trunc0(v * (4096 - D) / 4096) + u + (B << 6)); s = v >= TH << 6;
    v -= s * TH << 6; the readout sums W s + B. Returns (readout [N, c], spikes per layer [N, T, n])."""
    N, T = len(xq), g.T
    spikes = [np.zeros((N, T, l.n_out), bool) for l in g.spiking_layers]
    R = np.zeros((N, g.readout.n_out), np.int64)
    v = [np.zeros((N, l.n_out), np.int64) for l in g.spiking_layers]
    for t in range(T):
        s = xq.reshape(N, -1).astype(np.int64)
        for i, l in enumerate(g.spiking_layers):
            u = wrap((s @ l.weight.T) << 6)
            dec = np.sign(v[i]) * ((np.abs(v[i]) * (4096 - g.decay)) >> 12)
            v[i] = np.clip(dec + u + (l.bias << 6), -STATE_MAX, STATE_MAX)
            s = v[i] >= (l.threshold << 6)
            v[i] = v[i] - s * (l.threshold << 6)
            spikes[i][:, t] = s
            s = s.astype(np.int64)
        R += s @ g.readout.weight.T + g.readout.bias
    return R, spikes


def wrap_graph(T=6, bias=(0, 5)):
    """fc0 neuron 0 sums three 255 x 255 products: 195,075 << 6 = 12,484,800 wraps the 24-bit u
    register to -4,292,416; neuron 1 stays small. fc1 never wraps."""
    fc0 = Layer("fc0", "dense", np.array([[255, 255, 255], [3, -4, 5]]), np.array(bias), (3,), (2,),
                threshold=2000)
    fc1 = Layer("fc1", "dense", np.array([[40, -10], [-10, 40]]), np.array([0, 1]), (2,), (2,), threshold=50)
    ro = Layer("readout", "readout", np.array([[3, -1], [-1, 3]]), np.array([0, 0]), (2,), (2,))
    return Graph(layers=[fc0, fc1, ro], T=T, lam=0.5, decay=decay_for(0.5), input_shape=(3,),
                 input_scale=1.0, input_bits=8)


def test_wrap_is_predicted_by_the_certificate_and_shown_by_stock_lava():
    g = wrap_graph()
    cert = certify(g)
    assert not cert.exact
    reg = {c.layer: c for c in cert.checks if c.check == "current_reg"}
    assert set(reg) == {"fc0", "fc1"} and not reg["fc0"].ok and reg["fc1"].ok
    assert "12,484,800 > 2^23-1" in reg["fc0"].detail and "wraps" in reg["fc0"].detail
    assert any(r.startswith("current_reg (fc0)") for r in cert.reasons)
    x = np.array([[255, 255, 255], [20, 30, 40], [255, 255, 255], [200, 0, 9]])
    res = stock.run_lava_stock(g, x)
    r_model, s_model = loihi_register_model(g, x)
    np.testing.assert_array_equal(res.readout, r_model)
    assert mismatches(res.spikes, s_model) == 0
    # the wrap really happened where predicted (fc0 neuron 0 on the 255-inputs), and only there
    ir = emulate(g, x, record_spikes=True)
    diff = res.spikes[0] != ir.spikes[0]
    assert diff[[0, 2], :, 0].all() and not diff[:, :, 1].any() and not diff[[1, 3]].any()
    assert not s_model[0][[0, 2], :, 0].any() and ir.spikes[0][[0, 2], :, 0].all()
    # the independent model itself can tell: without the wrap it is the IR's LIF form
    r_nw, s_nw = loihi_register_model(g, x, wrap=lambda a: a)
    np.testing.assert_array_equal(r_nw, reference_batch(g, x)[0])
    assert mismatches(res.spikes, s_nw) > 0
    # saf verify says the same: NOT EXACT naming fc0's register, and Lava's stock model departs at fc0
    # (the record without its refusal: the registry's `lava` refuses this network, below)
    rep = verify(Bundle(None, {}, g), x, None, [BACKENDS["emulator"], _unrefusing_lava()])
    assert not rep.ok and not rep.certificate["exact"]
    assert any(r.startswith("current_reg (fc0)") for r in rep.certificate["reasons"])
    (p,) = rep.pairs
    assert p["expected_exact"] and p["first"]["layer"] == "fc0" and p["first"]["neuron"] == 0
    with pytest.raises(BackendError, match=r"^lava cannot run this network: layer fc0: worst \|W s_in\| << 6 = "
                                           r"12,484,800 > .* wraps .*; use lava-own"):
        verify(Bundle(None, {}, g), x, None, ["emulator", "lava"])


def _unrefusing_lava():
    """The `lava` record with its refusal removed: what the registry's `lava` was before it refused."""
    return dataclasses.replace(BACKENDS["lava"], refuses=lambda graph: "")


def register_only_graph():
    """T = 1 and B = -100: |W x + B| << 6 fits (state_24bit ok) but |W x| << 6 = 8,390,336 wraps u."""
    w = np.array([[255] * 16 + [149]])
    fc = Layer("fc0", "dense", w, np.array([-100]), (17,), (1,), threshold=1000)
    ro = Layer("readout", "readout", np.array([[1]]), np.array([0]), (1,), (1,))
    return Graph(layers=[fc, ro], T=1, lam=0.5, decay=decay_for(0.5), input_shape=(17,), input_scale=1.0,
                 input_bits=5)


def test_current_register_is_its_own_condition():
    """register_only_graph: a bound that included B would miss the wrap."""
    g = register_only_graph()
    cert = certify(g)
    bad = [c.check for c in cert.checks if not c.ok]
    assert bad == ["current_reg"], cert.format()
    x = np.full((1, 17), 31)
    res = stock.run_lava_stock(g, x)
    assert not res.spikes[0].any() and reference_batch(g, x)[1][0].all()
    np.testing.assert_array_equal(res.readout, loihi_register_model(g, x)[0])
    g.target = "onnx"                    # the export target has no such register: export's certificate
    assert certify(g).exact              # has no such row (verify adds the running backend's, below)


def test_onnx_target_bundle_is_flagged_for_lavas_register(tmp_path, capsys):
    """Item 3: the current register follows the backend that runs, not the export target. An
    onnx-target bundle whose worst |W s_in| << 6 exceeds 2^23 - 1: export's certificate (target only)
    is EXACT, as verify's was before for `lava-stock`, which ran it silently (its u wraps where the
    inputs drive it). Now verify's certificate adds `lava`'s 24-bit register and fails; the `lava`
    record refuses in one line naming lava-own; the default list swaps in lava-own and says so."""
    g = register_only_graph()
    g.target = "onnx"
    assert certify(g).exact                                         # the old, target-only rows
    cert = certify(g, registers={"lava": STOCK_REGISTER})
    assert not cert.exact and [c.check for c in cert.checks if not c.ok] == ["current_reg"]
    assert "8,390,336 > 2^23-1" in cert.reasons[0] and "24-bit input register u (lava) wraps" in cert.reasons[0]
    benign = np.array([[31] * 16 + [0], [7] * 17, [0] * 17])       # inputs that do not reach the wrap
    # the old behaviour, re-created (the stock record without a refusal): every spike agrees on these
    # inputs, only the certificate can tell, and now it does
    rep = verify(Bundle(None, {}, g), benign, None, [BACKENDS["emulator"], _unrefusing_lava()])
    assert rep.pairs[0]["spike_mismatches"] == 0 and rep.pairs[0]["readout_mismatches"] == 0
    assert not rep.certificate["exact"]
    assert any(r.startswith("current_reg (fc0)") and "(lava) wraps" in r for r in rep.certificate["reasons"])
    b = write_bundle(g, tmp_path / "b", writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    x = tmp_path / "x.npy"
    np.save(x, benign)
    rc = main(["verify", str(b), "--backends", "emulator,lava", "--inputs", str(x), "--out", str(tmp_path / "v1")])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and cap.err.count("\n") == 1 and not (tmp_path / "v1").exists(), cap.err
    assert "--backends: lava cannot run this network: layer fc0: worst |W s_in| << 6 = 8,390,336" in cap.err
    assert cap.err.rstrip().endswith("use lava-own (the toolchain's own Lava Processes)")
    rc = main(["verify", str(b), "--inputs", str(x), "--out", str(tmp_path / "v2"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((tmp_path / "v2" / "verify.json").read_text())
    assert set(rep["samples"]) == {"saf-int", "emulator", "onnx", "lava-own"} and rep["ok"]
    assert len(rep["notes"]) == 1 and rep["notes"][0].startswith("lava replaced by lava-own")
    assert "note: lava replaced by lava-own" in (tmp_path / "v2" / "summary.txt").read_text()


# ---------------------------------------------------------------- refusals, CLI, verify, listing

def test_refusals_name_the_reason():
    g = random_graph("dense", T=6, lam=0.25, seed=1, frac_bits=10)
    with pytest.raises(stock.StockModelError, match=r"layer fc0: F = 10 > 6 .* programmable \(Loihi 2 "
                                                    r"microcode\) neuron"):
        stock.run_lava_stock(g, random_inputs(g, 1))
    g = random_graph("dense", T=3, seed=1, feedback=True)
    with pytest.raises(stock.StockModelError, match="feedback edge.*phased feedback schedule$"):
        stock.run_lava_stock(g, random_inputs(g, 1))
    with pytest.raises(BackendError, match="^lava cannot run this network: 1 feedback edge.*; use lava-own"):
        run_backend("lava", Bundle(None, {}, g), random_inputs(g, 1))
    g = random_graph("dense", T=3, seed=1)
    g.layers[1].threshold = 1 << 17
    with pytest.raises(stock.StockModelError, match="layer fc1: threshold 131072"):
        stock.run_lava_stock(g, random_inputs(g, 1))


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    return out


def test_cli_refuses_f_over_6_in_one_line(tmp_path, capsys):
    g = random_graph("dense", T=6, lam=0.25, seed=1, frac_bits=10, input_shape=(1, 8, 8))
    b = write_bundle(g, tmp_path / "b")
    rc = main(["run", str(b), "--backend", "lava", "--data", "digits", "--limit", "2"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and cap.err.count("\n") == 1, cap.err
    assert cap.err.startswith("saf run: error: lava cannot run this network: layer fc0: F = 10 > 6")
    assert "programmable (Loihi 2 microcode) neuron" in cap.err and "use lava-own" in cap.err


def test_demo_verify_compares_stock_and_own_lava_with_every_form(demo_bundle, tmp_path, capsys):
    rc = main(["verify", str(demo_bundle), "--backends", "saf-int,emulator,onnx,lava-own,lava",
               "--lava-limit", "50", "--out", str(tmp_path / "v"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["ok"] and rep["certificate"]["exact"]
    assert any(c["check"] == "current_reg" and c["ok"] for c in rep["certificate"]["checks"])
    assert rep["samples"]["lava-own"] == rep["samples"]["lava"] == 50
    pairs = {(p["a"], p["b"]): p for p in rep["pairs"]}
    for other in ("saf-int", "emulator", "onnx", "lava-own"):
        p = pairs[(other, "lava")]
        assert p["expected_exact"] and p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0
        assert p["spikes_total"] == 50 * 6 * (1024 + 2048 + 128)
    models = rep["models"]["lava"]
    assert [m["layer"] for m in models] == ["input", "conv1", "conv2", "fc3", "readout"]
    own = rep["models"]["lava-own"]          # the own-model backend says it is all own code
    assert [m["layer"] for m in own] == ["input", "conv1", "conv2", "fc3", "readout"]
    assert all(p["own_code"] == "Process and ProcessModel" for m in own for p in m["parts"])
    assert "lava: Lava Processes / ProcessModels that ran" in out
    assert ("lava.proc.conv.process.Conv / saf.deploy.lava.procs.stock_conv.PyConvModelFixedIm2col [own: "
            "ProcessModel subclass of lava.proc.conv.models.PyConvModelFixed overriding only run_spk]") in out
    # verify's report labels each Lava backend for what it is
    assert "[simulated Loihi: Lava's stock Dense/Conv/LIFReset models" in out
    assert "[the toolchain's own Lava Processes, fixed_pt: a transcription" in out


def test_run_json_lists_the_classes_that_ran(demo_bundle, capsys):
    assert main(["run", str(demo_bundle), "--backend", "lava", "--limit", "3", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    layers = {m["layer"]: {p["role"]: p for p in m["parts"]} for m in st["lava_models"]}
    assert layers["input"]["graded input"]["process"] == "lava.proc.io.source.RingBuffer"
    assert layers["conv1"]["synapse"]["model"] == "saf.deploy.lava.procs.stock_conv.PyConvModelFixedIm2col"
    assert layers["conv1"]["synapse"]["model_base"] == "lava.proc.conv.models.PyConvModelFixed"
    assert layers["fc3"]["synapse"]["process"] == "lava.proc.dense.process.Dense"
    assert layers["fc3"]["synapse"]["model"] == "lava.proc.dense.models.PyDenseModelBitAcc"
    assert layers["fc3"]["synapse"]["own_code"].startswith("none")
    n = layers["fc3"]["neuron"]
    assert n["process"] == "lava.proc.lif.process.LIFReset"
    assert n["model"] == "saf.deploy.lava.procs.stock_lif.PySoftResetLifBitAcc"
    assert n["model_base"] == "lava.proc.lif.models.PyLifResetModelBitAcc"
    assert n["own_code"].endswith("overriding only reset_voltage, spiking_activation")
    assert layers["readout"]["readout"]["process"] == "saf.deploy.lava.procs.readout.Integrator"
    assert layers["readout"]["readout"]["own_code"] == "Process and ProcessModel"
    assert st["samples"] == 3 and st["accuracy"] > 0.5
    assert st["backend_description"].startswith("simulated Loihi: Lava's stock Dense/Conv/LIFReset models")


def test_bench_infer_lists_a_refused_lava_as_unavailable(tmp_path):
    """`saf bench infer`'s default backends include `lava`: on a network the stock model refuses
    (feedback) its row says why instead of the whole bench failing."""
    from saf.deploy.bench.infer import bench_infer

    g = random_graph("dense", T=3, seed=1, feedback=True, input_shape=(1, 8, 8))
    b = write_bundle(g, tmp_path / "b")
    res = bench_infer(b, data="digits", limit=4, backends=("emulator", "lava"), repeats=1, peak_seconds=0.05)
    rows = {r["backend"]: r for r in res["rows"]}
    assert rows["emulator"]["available"] and not rows["lava"]["available"]
    note = rows["lava"]["note"]
    assert note.startswith("1 feedback edge") and note.endswith("use lava-own (the toolchain's own Lava Processes)")


def test_info_and_run_label_each_lava_model(demo_bundle, tmp_path, capsys):
    """`saf info` says which Lava model runs the bundle (or why `lava` refuses it and that lava-own,
    the toolchain's transcription, runs it); `saf run` prints the backend's description by its name."""
    assert main(["info", str(demo_bundle)]) == 0
    out = capsys.readouterr().out
    assert "Lava: backend lava runs it (simulated Loihi: Lava's stock Dense/Conv/LIFReset models" in out
    g = random_graph("dense", T=6, lam=0.25, seed=1, frac_bits=10, input_shape=(1, 8, 8))
    b = write_bundle(g, tmp_path / "b")
    assert main(["info", str(b)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("Lava:"))
    assert line.startswith("Lava: backend lava refuses it (layer fc0: F = 10 > 6")
    assert line.endswith("; backend lava-own runs it (the toolchain's own Lava Processes, fixed_pt: a "
                         "transcription of the IR's arithmetic, not Lava's Loihi models)")
    assert main(["run", str(b), "--backend", "lava-own", "--data", "digits", "--limit", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("lava-own (the toolchain's own Lava Processes, fixed_pt: a transcription")
