"""FP deployment (issue 15, docs/methods.md#fp-deployment): two-state (CUBA) layers with Lava's 12-bit current decay
du and the first-spike readout, in every integer backend, bit for bit.

- synthetic two-state graphs (random du and D, dense and conv, binary spike-train input) run through
  the emulator, ONNX (onnx.checker + onnxruntime), Lava (lava-own: own SoftResetLIF) and lava (Lava's stock
  LIFReset with only compare/reset overridden) and agree with an independent per-step reference
  written here from export/ir.py's formula (plain Python ints, one sample at a time);
- each injected fault (current not carried, first-spike readout as a count) is caught by verify;
- the certificate: the carried-current bound (a graph whose U would wrap is refused), no exactness
  claim for the training form;
- end to end: a handmade FPNet -> export (loihi, onnx) -> verify with Lava and the dt table; the
  discrete first spikes approach the continuous ones as dt shrinks.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest

from saf.deploy.backends.registry import BACKENDS, Bundle, inject_fault
from saf.deploy.backends.emulator import emulate, run_emulator
from saf.deploy.backends.onnx_runner import run_onnx
from saf.deploy.verify import verify
from saf.export.proof.certificate import certify
from saf.export.ir import Graph, Layer
from saf.export.onnx_model import build_onnx_model

STATE_MAX = (1 << 23) - 1


# ------------------------------------------------------------------ synthetic graphs
def fp_graph(arch: str = "dense", seed: int = 0, T: int = 20) -> Graph:
    """Two-state spiking layers with random du and D, an identity first-spike readout."""
    rng = np.random.default_rng(seed)
    du = lambda: int(rng.integers(200, 4000))        # noqa: E731 - random current decays
    layers = []
    if arch == "dense":
        shape, sizes = (10,), [10, 8, 4]
        for i in range(2):
            w = rng.integers(-60, 121, size=(sizes[i + 1], sizes[i])).astype(np.int64)
            layers.append(Layer(f"fc{i}", "dense", w, rng.integers(-3, 4, sizes[i + 1]).astype(np.int64),
                                (sizes[i],), (sizes[i + 1],), threshold=int(rng.integers(60, 150)), du=du()))
    else:
        shape = (1, 5, 5)
        w = rng.integers(-40, 101, size=(3, 1, 3, 3)).astype(np.int64)
        layers.append(Layer("conv0", "conv", w, rng.integers(-2, 3, 3).astype(np.int64), shape, (3, 5, 5),
                            threshold=int(rng.integers(100, 250)), padding=1, du=du()))
        w2 = rng.integers(-30, 61, size=(4, 75)).astype(np.int64)
        layers.append(Layer("fc1", "dense", w2, np.zeros(4, np.int64), (75,), (4,),
                            threshold=int(rng.integers(100, 250)), du=du()))
    n = layers[-1].n_out
    layers.append(Layer("readout", "readout", np.eye(n, dtype=np.int64), np.zeros(n, np.int64), (n,), (n,),
                        frac_bits=0, first_spike=True))
    D = int(rng.integers(50, 1500))
    return Graph(layers=layers, T=T, lam=(4096 - D) / 4096, decay=D, input_shape=shape, input_scale=1.0,
                 input_bits=1, target="loihi2", input_time_varying=True, meta={"source": f"fp_graph {arch} {seed}"})


def spike_trains(g: Graph, n: int, seed: int = 0) -> np.ndarray:
    """Latency-style inputs: each input spikes once (or never) at a random step, like the FP code."""
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(g.input_shape))
    x = np.zeros((n, g.T, n_in), dtype=np.int64)
    when = rng.integers(0, g.T + 3, size=(n, n_in))             # >= T: silent
    for s in range(n):
        for k in range(n_in):
            if when[s, k] < g.T:
                x[s, when[s, k], k] = 1
    return x.reshape(n, g.T, *g.input_shape)


# ------------------------------------------------------------------ independent reference
def _trunc(x: int, m: int) -> int:
    """x * m / 4096 truncated toward zero, Python ints."""
    mag = (abs(x) * m) >> 12
    return mag if x >= 0 else -mag


def _syn(layer, x: list) -> list:
    w = layer.weight
    if layer.kind == "conv":
        c, h, wd = layer.in_shape
        co, _, kh, kw = w.shape
        p = layer.padding
        out = []
        for o in range(co):
            for i in range(layer.out_shape[1]):
                for j in range(layer.out_shape[2]):
                    acc = 0
                    for ci in range(c):
                        for a in range(kh):
                            for b in range(kw):
                                y, z = i - p + a, j - p + b
                                if 0 <= y < h and 0 <= z < wd:
                                    acc += int(w[o, ci, a, b]) * x[ci * h * wd + y * wd + z]
                    out.append(acc)
        return out
    return [sum(int(w[r, k]) * x[k] for k in range(len(x))) for r in range(w.shape[0])]


def reference(g: Graph, frames: np.ndarray) -> tuple:
    """One sample [T, n_in] -> (spikes per layer [T][n] of 0/1, readout list): export/ir.py literally:
    U = trunc0(U (4095-du)/4096) + ((W s) << F); V = clip(trunc0(V' (4096-D)/4096) + U + (B << F));
    s = V >= TH << F; V' = V - s TH << F; R = T + 1 - first step with W_o s_N + B_o > 0."""
    sp = g.layers[:-1]
    U = [[0] * l.n_out for l in sp]
    V = [[0] * l.n_out for l in sp]
    out = [[] for _ in sp]
    ro = g.layers[-1]
    R = [0] * ro.n_out
    for t in range(g.T):
        x = [int(v) for v in frames[t].reshape(-1)]
        for li, l in enumerate(sp):
            F, th = l.frac_bits, int(l.threshold) << l.frac_bits
            bias = np.repeat(l.bias, l.n_out // len(l.bias)) if l.kind == "conv" else l.bias
            cur = _syn(l, x)
            s = []
            for k in range(l.n_out):
                U[li][k] = _trunc(U[li][k], 4095 - l.du) + (cur[k] << F)
                v = _trunc(V[li][k], 4096 - g.decay) + U[li][k] + (int(bias[k]) << F)
                v = max(-STATE_MAX, min(STATE_MAX, v))
                fire = 1 if v >= th else 0
                V[li][k] = v - fire * th
                s.append(fire)
            out[li].append(s)
            x = s
        drive = [a + int(b) for a, b in zip(_syn(ro, x), ro.bias)]
        for k in range(ro.n_out):
            if R[k] == 0 and drive[k] > 0:
                R[k] = g.T - t
    return out, R


def _check_against_reference(g, xq, r):
    for s in range(len(xq)):
        spikes, R = reference(g, xq[s].reshape(g.T, -1))
        for li in range(len(spikes)):
            assert np.array_equal(r.spikes[li][s], np.array(spikes[li], dtype=bool)), (r.backend, s, li)
        assert list(r.readout[s]) == R, (r.backend, s)


def _onnx(g, xq):
    model = build_onnx_model(g)
    onnx.checker.check_model(model)
    return run_onnx(model.SerializeToString(), g, xq)


@pytest.mark.parametrize("arch,seed", [("dense", 0), ("dense", 1), ("conv", 2)])
def test_emulator_and_onnx_equal_reference(arch, seed):
    g = fp_graph(arch, seed)
    xq = spike_trains(g, 12, seed)
    em, ox = run_emulator(g, xq), _onnx(g, xq)
    _check_against_reference(g, xq, em)
    _check_against_reference(g, xq, ox)
    # the nets are alive: spikes in every layer, first spikes read out, and the carry matters
    assert all(s.any() for s in em.spikes) and (em.readout > 0).any()
    no_carry = emulate(g, xq, current_decay=False)
    assert any((a != b).any() for a, b in zip(no_carry.spikes, em.spikes))


def test_reference_catches_a_wrong_current_decay():
    """The reference is not vacuous: one du off by 64 changes the spikes it must match."""
    g = fp_graph("dense", 0)
    xq = spike_trains(g, 12, 0)
    em = run_emulator(g, xq)
    g.layers[0].du -= 64
    with pytest.raises(AssertionError):
        _check_against_reference(g, xq, em)


def test_du_4095_is_the_one_state_neuron():
    """du = 4095 carries nothing: bit for bit the one-state IR neuron (I << F enters V directly)."""
    g = fp_graph("dense", 3)
    for l in g.layers[:-1]:
        l.du = 4095
    assert not any(l.two_state for l in g.layers[:-1])
    xq = spike_trains(g, 8, 3)
    _check_against_reference(g, xq, run_emulator(g, xq))


def test_first_spike_readout_ties_lowest_index():
    g = fp_graph("dense", 0, T=6)
    n = g.readout.n_out
    em = np.zeros((1, 6, n), dtype=bool)
    em[0, 2, [1, 3]] = True                          # two outputs first spike at step 3 (1-based)
    em[0, 4, 0] = True
    from saf.export.ir import first_spike_readout
    R = first_spike_readout(em.astype(np.int64))
    assert list(R[0]) == [2, 4, 0, 4] and int(R[0].argmax()) == 1


@pytest.mark.parametrize("backend", ["lava-own", "lava"])
def test_lava_equals_reference(backend):
    g = fp_graph("dense", 1)
    xq = spike_trains(g, 5, 1)
    r = BACKENDS[backend].runner(None, g, xq, True, False, False)
    _check_against_reference(g, xq, r)
    if backend == "lava":                             # Lava's stock LIF model ran with our du
        assert r.info["neuron_overrides"] == ["spiking_activation", "reset_voltage"]


def test_lava_conv_equals_emulator():
    g = fp_graph("conv", 2)
    xq = spike_trains(g, 4, 2)
    r, em = BACKENDS["lava-own"].runner(None, g, xq, True, False, False), run_emulator(g, xq)
    assert all(np.array_equal(a, b) for a, b in zip(r.spikes, em.spikes))
    assert np.array_equal(r.readout, em.readout)


@pytest.mark.parametrize("fault", ["current-decay", "first-spike"])
def test_each_fault_is_caught(fault):
    g = fp_graph("dense", 0)
    xq = spike_trains(g, 30, 0)
    b = Bundle(None, {}, g)
    pair = [BACKENDS["emulator"], replace(BACKENDS["emulator"], name="emulator-2")]
    ok = verify(b, xq, None, pair)
    assert ok.ok, ok.failures
    rep = verify(b, xq, None, pair, fault=fault)     # records obey the CLI's rule: >= 2 besides the fault
    assert not rep.ok and any(f"emulator[{fault}]" in f for f in rep.failures)


def test_faults_refused_where_they_change_nothing():
    from saf.deploy.backends.spec import BackendError
    g = fp_graph("dense", 0)
    for l in g.layers[:-1]:
        l.du = 4095
    with pytest.raises(BackendError, match="two-state"):
        inject_fault(g, "current-decay")
    g.layers[-1].first_spike = False
    with pytest.raises(BackendError, match="first-spike"):
        inject_fault(g, "first-spike")


def test_saf_int_refuses_two_state_graphs():
    from saf.deploy.backends.spec import BackendError
    from saf.deploy.backends.registry import run_spec
    g = fp_graph("dense", 0)
    with pytest.raises(BackendError, match="no integer SAF form"):
        run_spec(BACKENDS["saf-int"], Bundle(None, {}, g), spike_trains(g, 2))


# ------------------------------------------------------------------ certificate
def test_certificate_bounds_the_carried_current_and_claims_no_exactness():
    g = fp_graph("dense", 0)
    c = certify(g)
    rows = {(ch.check, ch.layer): ch for ch in c.checks}
    assert not c.exact and not rows[("training_form", "all")].ok
    assert "approximate" in rows[("training_form", "all")].detail
    assert not any(ch.check in ("leak", "frac_bits") for ch in c.checks)
    # the certified |U| bound holds on the run, and is what the carry makes it: (A << F) / (1 - r)
    from saf.export.proof.state_bound import current_state_bound
    for l in g.layers[:-1]:
        assert rows[("current_reg", l.name)].ok
        a = int(np.where(l.weight > 0, l.weight, 0).sum(1).max())
        assert current_state_bound(a, 6, l.du, g.T) > (a << 6)        # the carry counts
        assert current_state_bound(a, 6, 4095, g.T) == (a << 6)
    # a graph whose U would wrap the 24-bit register is refused by the certificate row
    g.layers[1].du, g.T = 0, 400
    g.layers[1].weight[:] = 250
    row = {(ch.check, ch.layer): ch for ch in certify(g).checks}[("current_reg", "fc1")]
    assert not row.ok and "wraps" in row.detail


def test_certified_current_bound_is_reached_closely():
    """All-ones input every step drives U towards its bound (A << F) sum r^j: the bound is tight."""
    from saf.export.proof.state_bound import current_state_bound
    g = fp_graph("dense", 0, T=40)
    l = g.layers[0]
    l.weight[:] = np.abs(l.weight)
    a = int(l.weight.sum(1).max())
    U, top = 0, 0
    for _ in range(g.T):
        U = _trunc(U, 4095 - l.du) + (a << 6)
        top = max(top, U)
    bound = current_state_bound(a, 6, l.du, g.T)
    assert 0.99 * bound <= top <= bound


# ------------------------------------------------------------------ the discretization's one-step map
def _single_synapse_peak(k: int) -> tuple:
    """(integer peak of V / (TH << 6) * theta, continuous peak) for one input spike at t = 0 of weight 2
    into one neuron (alpha 1, beta 0.9: the continuous V peaks at 2 max h = 0.775, below theta 1)."""
    from saf.export.fold.fp import fold_fp, spike_frames
    from saf.hw_targets import get_target
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode
    code = LatencyCode(lo=(0.0,), hi=(1.0,), t_early=0.0, t_late=4.0)
    net = FPNet(FPParams(1.0, 0.9, 1.0, 4.0, 6.0), [np.array([[2.0]]), np.array([[1.0]])], code)
    g = fold_fp(net, k, get_target("loihi2"))
    fp = g.meta["fp"]
    r = emulate(g, spike_frames(np.array([[0.0]]), fp["dt"], g.T), record_potentials=True)
    assert not r.spikes[0].any()
    t = np.linspace(0.0, 6.0, 600001)
    cont = (2.0 * (np.exp(-t) - np.exp(-0.9 * t)) / (0.9 - 1.0)).max()
    return r.potentials[0][0, :, 0].max() / (g.layers[0].threshold << 6), cont


def test_fp_discretization_matches_the_continuous_potential():
    """Loihi's V[t] = b V[t-1] + U[t] adds an input in the step it arrives: the weight must carry
    h(dt), the kernel over that one step. V's peak then equals the continuous peak up to the 12-bit
    decays and the weight grid (< 1 % at dt = 1/8 and 1/16), where h(dt) e^{alpha dt} would overshoot
    by e^{alpha dt} (6-13 %); the check fails on that gain (injected below)."""
    for k in (5, 6):
        got, cont = _single_synapse_peak(k)
        assert abs(got / cont - 1) < 0.01, (k, got, cont)


def test_fp_discretization_check_catches_the_overshooting_gain(monkeypatch):
    import math

    import saf.export.fold.fp as ff
    right = ff.step_gain
    monkeypatch.setattr(ff, "step_gain", lambda a, b, dt: right(a, b, dt) * math.exp(a * dt))
    got, cont = _single_synapse_peak(6)
    assert got / cont - 1 > 0.05


# ------------------------------------------------------------------ end to end: FPNet -> bundle -> verify
def _iris_fp_net():
    """A handmade 4-6-3 FP net on Iris's latency code (short horizon t_max = 2 so T stays small)."""
    from saf.train.data import load_dataset
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode
    ds = load_dataset("iris")
    code = LatencyCode.fit(np.concatenate([ds.x_train.numpy(), ds.x_test.numpy()]), 0.0, 2.0)
    rng = np.random.default_rng(1)
    w1 = rng.normal(2.5, 1.0, (6, 4))
    w2 = rng.normal(1.2, 0.6, (3, 6))
    return FPNet(FPParams(1.0, 0.9, 1.0, 2.0, 5.0), [w1, w2], code)


@pytest.fixture(scope="module")
def fp_bundles(tmp_path_factory):
    from saf.deploy.main import main
    from saf.train.methods.fp.checkpoint import save_fp_checkpoint
    d = tmp_path_factory.mktemp("fp")
    net = _iris_fp_net()
    save_fp_checkpoint(d / "model.safetensors", net, {"dataset": "iris", "model": "fp-handmade", "seed": 0})
    assert main(["export", str(d / "model.safetensors"), "--target", "loihi", "--out", str(d / "loihi"),
                 "--dt-exp", "5"]) == 0
    assert main(["export", str(d / "model.safetensors"), "--target", "onnx", "--out", str(d / "onnx")]) == 0
    return d, net


def test_fp_export_writes_the_discretization(fp_bundles):
    from saf.export.bundle.store import FP_SOURCE_FILE
    d, net = fp_bundles
    b = Bundle.load(d / "loihi")
    fp = b.graph.meta["fp"]
    assert fp["k"] == 5 and fp["dt"] == 2.0 / 32 and b.graph.T == 80               # ceil(5 / (1/16))
    assert [l.du for l in b.graph.layers[:-1]] == [fp["du"]] * 2 and b.graph.readout.first_spike
    assert 4095 - fp["du"] == round(4096 * np.exp(-fp["dt"]))
    assert FP_SOURCE_FILE in b.manifest["files"]
    assert not b.manifest["certificate"]["exact"]
    assert "approximate" in b.manifest["certificate"]["reasons"][0]
    from saf.export.fold.fp import DT_EXP_DEFAULT
    assert Bundle.load(d / "onnx").graph.meta["fp"]["k"] == DT_EXP_DEFAULT           # the stated default
    from saf.deploy.verify.fp_dt import bundle_matches_its_source
    assert bundle_matches_its_source(b, net) == ""
    other = _iris_fp_net()
    other.weights[1] = other.weights[1] * 1.1
    assert "not fold_fp" in bundle_matches_its_source(b, other)


def test_fp_verify_with_lava_prints_the_dt_table(fp_bundles, capsys):
    import json
    from saf.deploy.main import main
    d, _ = fp_bundles
    out = d / "verify"
    capsys.readouterr()
    rc = main(["verify", str(d / "loihi"), "--dt-exps", "3-9", "--lava-limit", "12", "--out", str(out),
               "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "saf-int left out" in text and "FP deployment vs the continuous-time model" in text
    rep = json.loads((out / "verify.json").read_text())
    names = {(p["a"], p["b"]) for p in rep["pairs"]}
    assert names == {("emulator", "onnx"), ("emulator", "lava"), ("onnx", "lava")}
    assert all(p["ok"] and p["expected_exact"] and p["spike_mismatches"] == 0 for p in rep["pairs"])
    assert rep["samples"]["lava"] == 12 and rep["samples"]["emulator"] == 30
    rows = {r["k"]: r for r in rep["fp"]["rows"]}
    assert sorted(rows) == list(range(3, 10)) and (out / "fp-dt-table.png").is_file()
    # the discrete first spikes approach the continuous ones as dt shrinks
    assert rows[9]["time_error_mean"] < rows[5]["time_error_mean"] / 4
    assert rows[9]["time_error_max"] < rows[3]["time_error_max"]
    assert rows[9]["prediction_agreement"] >= 0.9 and rows[9]["fire_mismatch"] == 0.0


def test_fp_verify_catches_a_fault_on_the_bundle(fp_bundles, capsys):
    from saf.deploy.main import main
    d, _ = fp_bundles
    capsys.readouterr()
    rc = main(["verify", str(d / "loihi"), "--backends", "emulator,onnx", "--inject-fault", "current-decay",
               "--dt-exps", "4", "--out", str(d / "verify-fault"), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1 and "emulator[current-decay]" in text and "verify: FAIL" in text


def test_fp_cli_errors(fp_bundles, capsys):
    from saf_test_helpers.cli import user_error
    d, _ = fp_bundles
    ck = str(d / "model.safetensors")
    user_error(capsys, ["export", ck, "--target", "loihi", "--out", str(d / "x"), "--T", "8"], "--T", "FP checkpoint")
    user_error(capsys, ["export", ck, "--target", "loihi", "--out", str(d / "x"), "--dt-exp", "0"], "--dt-exp")
    line = user_error(capsys, ["export", ck, "--target", "loihi1", "--out", str(d / "x")], "subtractive reset")
    assert "graded input" not in line             # FP's input is binary spike frames (input_bits 1)
    user_error(capsys, ["verify", str(d / "loihi"), "--dt-exps", "2-x"], "--dt-exps")
    user_error(capsys, ["verify", str(d / "loihi"), "--backends", "saf-int,emulator", "--out", str(d / "v2")],
               "saf-int", "no integer SAF form")
    assert not (d / "x").exists()
