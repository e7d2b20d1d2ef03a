"""hw_targets: every rule fires on a crafted violating network and stays silent on a compliant one;
the mapper places the paper's VGG-11 (CIFAR-10) on Loihi 2 and refuses oversized networks with
numbers; target lookup; the package stays a leaf (no train/export/deploy/torch/lava)."""
from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from saf import hw_targets
from saf.hw_targets import (RULES, TARGETS, FeedbackDesc, LayerDesc, NetDesc, ResourceReport, TargetError,
                        Violation, check, get_target, map_network, weight_stats)
from saf.hw_targets import rules as R
from saf.hw_targets.mapper import conv_synapse_count

ROOT = pathlib.Path(__file__).resolve().parent.parent
L1, L2, ONNX = get_target("loihi1"), get_target("loihi2"), get_target("onnx")


def conv(name, c_in, c_out, hw, k=3, s=1, p=1, **kw):
    ho = (hw + 2 * p - k) // s + 1
    d = dict(max_abs_weight=126, threshold=100, max_abs_bias=50, state_bound=100_000,
             max_abs_current=4_000, odd_weights=False)
    d.update(kw)
    return LayerDesc(name=name, kind="conv", in_shape=(c_in, hw, hw), out_shape=(c_out, ho, ho),
                     n_neurons=c_out * ho * ho, fan_in=c_in * k * k, n_weights=c_out * c_in * k * k,
                     n_synapses=conv_synapse_count((c_in, hw, hw), c_out, (k, k), s, p),
                     stride=s, padding=p, **d)


def dense(name, n_in, n_out, kind="dense", **kw):
    d = dict(max_abs_weight=126, threshold=100, max_abs_bias=50, state_bound=100_000,
             max_abs_current=4_000, odd_weights=False)
    d.update(kw)
    return LayerDesc(name=name, kind=kind, in_shape=(n_in,), out_shape=(n_out,), n_neurons=n_out,
                     fan_in=n_in, n_weights=n_in * n_out, n_synapses=n_in * n_out, **d)


def good_net(**kw) -> NetDesc:
    """Small and compliant on every target."""
    layers = [conv("conv1", 3, 4, 8, input_graded=True), dense("fc1", 256, 32),
              dense("out", 32, 10, kind="readout", threshold=0)]
    d = dict(T=6, lam=0.9, decay=410, frac_bits=6, input_bits=8, reset_interval=8, name="good")
    d.update(kw)
    return NetDesc(layers=layers, **d)


def vgg11() -> NetDesc:
    """VGG-11 for CIFAR-10 as the exporter deploys it: each 2x2 average pool folded into the next
    3x3 conv (6x6 kernel, stride 2, padding 2), the global average pool into the readout."""
    layers = [conv("conv1", 3, 64, 32, input_graded=True), conv("conv2", 64, 128, 32),
              conv("conv3", 128, 256, 32, k=6, s=2, p=2), conv("conv4", 256, 256, 16),
              conv("conv5", 256, 512, 16, k=6, s=2, p=2), conv("conv6", 512, 512, 8),
              conv("conv7", 512, 512, 8, k=6, s=2, p=2), conv("conv8", 512, 512, 4),
              LayerDesc(name="fc", kind="readout", in_shape=(512, 4, 4), out_shape=(10,),
                        n_neurons=10, fan_in=8192, n_weights=81_920, n_synapses=81_920,
                        max_abs_weight=126, max_abs_bias=50, state_bound=100_000,
                        max_abs_current=4_000)]
    return NetDesc(layers=layers, T=4, lam=1.0, decay=0, name="vgg11")


def loihi1_native(net: NetDesc) -> NetDesc:
    """The network as Loihi 1's compartments compute: hard reset, strict compare, binary input."""
    layers = [dataclasses.replace(l, input_graded=False, subtractive_reset=False, fires_at_equality=False)
              for l in net.layers]
    return dataclasses.replace(net, layers=layers)


def all_layers(net: NetDesc, **changes) -> NetDesc:
    return dataclasses.replace(net, layers=[dataclasses.replace(l, **changes) for l in net.layers])


def with_layer(net: NetDesc, i: int, **changes) -> NetDesc:
    layers = list(net.layers)
    layers[i] = dataclasses.replace(layers[i], **changes)
    return dataclasses.replace(net, layers=layers)


# (rule, target, violating network, substrings its message must contain)
CASES = [
    (R.check_neuron_model, L1, lambda n: n,
     ["network good: loihi1's neurons cannot run a subtractive reset (layer conv1: its compartments reset V to 0",
      "firing at V >= TH << F (layer conv1: V > 6,399, not a multiple of its threshold granularity 64)",
      "graded input (layer conv1: its spikes are binary) (rule neuron_model)"]),
    (R.check_layer_kind, L2, lambda n: dataclasses.replace(n, layers=[n.layers[0], LayerDesc(
        name="pool1", kind="maxpool", in_shape=(4, 8, 8), out_shape=(4, 4, 4), n_neurons=64,
        fan_in=4, n_weights=0, n_synapses=256, max_abs_weight=0), *n.layers[1:]]),
     ["layer pool1: kind 'maxpool' is not supported on loihi2", "conv, dense, readout"]),
    (R.check_weight_magnitude, L2, lambda n: with_layer(n, 0, max_abs_weight=300),
     ["layer conv1: |weight| 300 exceeds loihi2's 255 (8-bit magnitude)"]),
    (R.check_weight_precision, L1, lambda n: with_layer(n, 1, max_abs_weight=201, odd_weights=True),
     ["layer fc1: mixed-sign odd weights up to |w| 201 lose their lowest bit on loihi1",
      "even weights up to 254", "odd ones up to 127"]),
    (R.check_threshold, L2, lambda n: with_layer(n, 1, threshold=200_000),
     ["layer fc1: threshold 200,000 exceeds loihi2's 17-bit mantissa (0..131,071)"]),
    (R.check_threshold, L1, lambda n: with_layer(n, 0, threshold=-3),
     ["layer conv1: threshold -3 is negative"]),
    (R.check_bias, L2, lambda n: with_layer(n, 1, max_abs_bias=5_000),
     ["layer fc1: |bias| 5,000 is not exact on loihi2", "4,095", "exact up to |bias| 4,095"]),
    (R.check_state_bound, L1, lambda n: with_layer(n, 2, state_bound=9_000_000),
     ["layer out: worst-case |state| 9,000,000 exceeds loihi1's 24-bit state (max 8,388,607)"]),
    (R.check_current, L2, lambda n: with_layer(n, 1, max_abs_current=200_000),
     ["layer fc1: input current up to 200,000 << 6 = 12,800,000 overflows loihi2's 24-bit"]),
    (R.check_current, L2, lambda n: with_layer(n, 1, max_abs_current=None, in_shape=(1024,),
                                                fan_in=1024, max_abs_weight=254),
     ["layer fc1: input current up to 260,146 << 6 = 16,649,344 overflows",
      "worst case fan-in 1,024 x |w| 254"]),
    (R.check_decay, L2, lambda n: dataclasses.replace(n, decay=4096, lam=0.0001),
     ["network good: decay 4,096 (lam 0.0001) does not fit loihi2's 12-bit decay (0..4,095)"]),
    (R.check_graded_input, L2, lambda n: dataclasses.replace(n, input_bits=40),
     ["layer conv1: 40-bit graded input exceeds loihi2's 32-bit spike payload"]),
    (R.check_graded_input, L1, lambda n: with_layer(n, 0, max_abs_current=5_000),
     ["layer conv1: loihi1 has binary spikes", "host injects", "5,000 exceeds the exact bias "
      "range 4,095"]),
    (R.check_frac_bits, L1, lambda n: dataclasses.replace(n, frac_bits=8),
     ["network good: frac_bits 8 differs from loihi1's fixed 6-bit alignment"]),
    (R.check_reset_interval, L2, lambda n: dataclasses.replace(n, reset_interval=6),
     ["network good: reset interval 6 steps is not a power of two", "loihi2", "pad to 8"]),
    (R.check_float_exact, ONNX, lambda n: with_layer(n, 1, threshold=300_000),
     ["layer fc1: threshold << 6 19,200,000 exceeds the exact integer range of onnx's float32 "
      "(16,777,216 = 2**24)"]),
    (R.check_float_exact, ONNX, lambda n: with_layer(n, 2, state_bound=20_000_000),
     ["layer out: readout sum 20,000,000 exceeds"]),
    (R.check_fan_in, L2, lambda n: with_layer(n, 1, in_shape=(70_000,), fan_in=70_000,
                                               n_weights=70_000 * 32, n_synapses=70_000 * 32),
     ["layer fc1: one neuron's fan-in of 70,000 synapses needs 547 KB, a core holds 192 KB",
      "layer fc1: one neuron's fan-in of 70,000 synapses needs 70,000 input axons, a core takes "
      "4,096"]),
]


def _id(case):
    return f"{case[0].__name__}-{case[1].name}"


def _good(target) -> NetDesc:
    """A network the target can run: the exporter's on Loihi 2 and ONNX, Loihi 1's own neurons there."""
    return loihi1_native(good_net()) if target is L1 else good_net()


@pytest.mark.parametrize("rule,target,make,expect", CASES, ids=[_id(c) for c in CASES])
def test_rule_fires_with_numbers(rule, target, make, expect):
    assert rule(_good(target), target) == []
    got = rule(make(good_net()), target)
    assert got and all(isinstance(v, Violation) for v in got)
    text = "\n".join(v.message for v in got)
    for s in expect:
        assert s in text, f"{s!r} not in {text!r}"
    assert all("\n" not in v.message for v in got)
    assert all(v.rule == rule.__name__[len("check_"):] for v in got)
    # check() runs the rule too
    assert set(v.message for v in got) <= set(v.message for v in check(make(good_net()), target))


def test_every_rule_has_a_case():
    assert {c[0] for c in CASES} == set(RULES)
    assert all(r.__name__.startswith("check_") for r in RULES)


@pytest.mark.parametrize("name", ["loihi1", "loihi2", "onnx"])
def test_compliant_network_passes(name):
    t = get_target(name)
    net = _good(t)
    assert check(net, t) == []
    for rule in RULES:
        assert rule(net, t) == []
    rep = map_network(net, t)
    assert rep.fits and rep.problems == []


def test_neuron_model_refusal_is_one_line_of_severity_refuse():
    """Loihi 1 refuses the exporter's neuron (soft reset, fire at equality, graded input) with one
    REFUSE violation naming every missing piece; each piece alone is enough to refuse."""
    got = check(good_net(), L1)
    nm = [v for v in got if v.rule == "neuron_model"]
    assert len(nm) == 1 and nm[0].severity == R.Severity.REFUSE and nm[0].layer is None
    assert max(v.severity for v in got) == R.Severity.REFUSE
    native = loihi1_native(good_net())
    assert R.check_neuron_model(native, L1) == []
    for change, word in [(lambda n: with_layer(n, 1, subtractive_reset=True), "subtractive reset (layer fc1:"),
                         (lambda n: with_layer(n, 0, fires_at_equality=True), "firing at V >= TH << F (layer conv1"),
                         (lambda n: with_layer(n, 0, input_graded=True), "graded input")]:
        msg = R.check_neuron_model(change(native), L1)
        assert len(msg) == 1 and word in msg[0].message and msg[0].message.count(";") == 0, msg
    # a strict-compare net on a >= target needs TH << F + 1 on the grid: Loihi 2 (step 1) holds it
    assert R.check_neuron_model(all_layers(good_net(), fires_at_equality=False), L2) == []
    coarse = dataclasses.replace(L2, name="coarse", threshold_step=64)
    msg = R.check_neuron_model(all_layers(good_net(), fires_at_equality=False), coarse)
    assert "firing at V > TH << F (layer conv1: V >= 6,401, not a multiple" in msg[0].message
    # the other rules keep their own severities
    assert {v.severity for v in check(with_layer(good_net(), 1, max_abs_current=200_000), L2)} == \
        {R.Severity.ADVISORY}


def test_weight_precision_allows_even_or_7bit_or_single_sign():
    net = with_layer(good_net(), 1, max_abs_weight=254, odd_weights=False)       # even
    assert R.check_weight_precision(net, L2) == []
    net = with_layer(good_net(), 1, max_abs_weight=127, odd_weights=True)        # 7-bit odd
    assert R.check_weight_precision(net, L2) == []
    net = with_layer(good_net(), 1, max_abs_weight=255, odd_weights=True, mixed_sign=False)
    assert R.check_weight_precision(net, L2) == []
    assert R.check_weight_magnitude(net, L2) == []
    stats = weight_stats(np.array([[-3, 201], [4, 0]]))
    net = with_layer(good_net(), 1, **stats)
    assert R.check_weight_precision(net, L2) and not R.check_weight_precision(net, ONNX)


def test_target_specific_rules_stay_silent_elsewhere():
    assert R.check_reset_interval(dataclasses.replace(good_net(), reset_interval=6), L1) == []
    assert R.check_frac_bits(dataclasses.replace(good_net(), frac_bits=8), ONNX) == []
    assert R.check_weight_magnitude(with_layer(good_net(), 0, max_abs_weight=300), ONNX) == []
    # loihi2 takes graded input on chip: no bias limit on the first layer's current
    assert R.check_graded_input(with_layer(good_net(), 0, max_abs_current=5_000), L2) == []


def test_vgg11_fits_loihi2():
    net = vgg11()
    assert check(net, L2) == []
    rep = map_network(net, "loihi2")
    assert isinstance(rep, ResourceReport)
    assert rep.fits and rep.problems == [], rep.format()
    assert 8 <= rep.cores_used <= L2.total_cores
    assert rep.chips_used == -(-rep.cores_used // 128) and rep.cores_available == 1024
    assert rep.cores_used == sum(l.cores for l in rep.layers)
    for l in rep.layers:
        assert l.feasible and l.cores >= 1
        assert l.neurons_per_core <= 8192 and l.cores * l.neurons_per_core >= l.neurons
        assert l.memory_bytes_per_core <= 192 * 1024
        assert l.input_axons_per_core <= 4096 and l.output_axons_per_core <= 4096
    assert rep.layer("fc").groups == 2            # 8,192 inputs > 4,096 axons: 2 partial sums
    assert 0 < rep.neuron_utilization <= 1 and 0 < rep.memory_utilization <= 1
    text = rep.format()
    assert "target loihi2: fits" in text and f"total: {rep.cores_used} cores" in text
    assert rep.to_dict()["layers"][0]["name"] == "conv1"


def test_vgg11_on_loihi1_refused_with_numbers():
    rep = map_network(vgg11(), L1)
    assert not rep.fits
    assert rep.layer("conv1").host_injected and rep.layer("conv1").input_axons_per_core == 0
    assert ("layer conv3: one neuron (128 channels x 6x6 kernel = fan-in 4,608) needs 4,608 "
            "input axons, a core takes 4,096") in rep.problems
    assert not rep.layer("conv8").feasible and rep.layer("conv2").feasible
    assert rep.problems[-1].startswith("needs at least ")
    assert "loihi1 Kapoho Bay (2 chips) has 256" in rep.problems[-1]
    assert "DOES NOT FIT" in rep.format()


def test_vgg11_onnx_counts_parameters():
    net = vgg11()
    rep = map_network(net, ONNX)
    want = sum(l.n_weights + l.n_biases + (1 if l.spiking else 0) for l in net.layers)
    assert rep.fits and rep.cores_available is None and rep.cores_used == 0
    assert rep.parameters == want and rep.parameter_bytes == 4 * want
    assert "parameters" in rep.format()


def test_huge_dense_refused():
    big = NetDesc(layers=[dense("big", 200_000, 200_000, max_abs_current=None),
                          dense("out", 200_000, 10, kind="readout", threshold=0)],
                  T=4, lam=1.0, decay=0, name="huge")
    rep = map_network(big, L2)
    assert not rep.fits
    assert ("layer big: one neuron's fan-in of 200,000 synapses needs 1,563 KB, a core holds "
            "192 KB") in rep.problems
    assert any("200,000 input axons, a core takes 4,096" in p for p in rep.problems)
    assert rep.layer("out").feasible and rep.layer("out").groups == 49
    assert any(v.rule == "fan_in" and v.layer == "big" for v in check(big, L2))


def test_too_many_cores_refused_then_fits_a_bigger_system():
    layers = [conv(f"c{i}", 3 if i == 0 else 64, 64, 128, input_graded=(i == 0))
              for i in range(6)]
    layers.append(dense("out", 64 * 128 * 128, 10, kind="readout", threshold=0))
    net = NetDesc(layers=layers, T=4, lam=1.0, decay=0, name="wide")
    rep = map_network(net, L2)
    assert not rep.fits and rep.cores_used > 1024
    msg = (f"needs {rep.cores_used:,} cores ({rep.chips_used:,} chips), loihi2 Kapoho Point "
           f"(8 chips) has 1,024")
    assert rep.problems == [msg]
    assert map_network(net, L2.with_chips(64, "64-chip system")).fits


def test_dense_split_over_cores():
    net = NetDesc(layers=[dense("fc1", 1000, 10_000), dense("out", 10_000, 10, kind="readout",
                                                            threshold=0)],
                  T=4, lam=1.0, decay=0)
    rep = map_network(net, L1)
    fc1 = rep.layer("fc1")
    assert rep.fits and fc1.cores > 10_000 // 1024
    assert fc1.memory_bytes_per_core <= 128 * 1024 and fc1.cores * fc1.neurons_per_core >= 10_000
    assert rep.layer("out").groups == 3              # 10,000 inputs in slices of <= 4,096


def test_conv_synapse_count():
    assert conv_synapse_count((1, 3, 3), 1, (3, 3), 1, 1) == 4 * 4 + 4 * 6 + 9  # corners/edges
    assert conv_synapse_count((2, 4, 4), 3, (2, 2), 2, 0) == 3 * 2 * 16


def test_get_target():
    assert get_target("loihi") is get_target("loihi2") is TARGETS["loihi"]
    assert get_target("LOIHI1") is L1 and get_target(ONNX) is ONNX
    assert sorted(TARGETS) == ["loihi", "loihi1", "loihi2", "onnx"]
    with pytest.raises(TargetError) as e:
        get_target("x")
    assert str(e.value) == "unknown target 'x' (known: loihi, loihi1, loihi2, onnx)"
    with pytest.raises(TargetError):
        map_network(good_net(), "tpu")
    with pytest.raises(TargetError):
        ONNX.with_chips(2)
    for name in ("Target", "LayerDesc", "NetDesc", "Violation", "TargetError", "RULES", "check",
                 "map_network", "ResourceReport", "TARGETS", "get_target"):
        assert hasattr(hw_targets, name)


def test_leaf_package():
    code = ("import sys, saf.hw_targets\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'lava'} "
            "or m.split('.')[:2] in (['saf', 'train'], ['saf', 'export'], ['saf', 'deploy']))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _fb_net(feedback: bool, n_in=256, n1=512, n2=256, kind="dense") -> NetDesc:
    """fc1 -> fc2 -> readout, optionally with a dense (or conv) feedback edge fc2 -> fc1."""
    fc1 = dense("fc1", n_in, n1)
    if feedback:
        fb = FeedbackDesc(src="fc2", kind="dense", in_shape=(n2,), out_shape=(n1,), n_weights=n1 * n2)
        fc1 = dataclasses.replace(fc1, feedback=(fb,), n_weights=fc1.n_weights + n1 * n2,
                                  n_synapses=fc1.n_synapses + n1 * n2)
    return NetDesc(layers=[fc1, dense("fc2", n1, n2), dense("out", n2, 10, kind="readout", threshold=0)],
                   T=4, lam=1.0, decay=0, name="fb" if feedback else "nofb")


@pytest.mark.parametrize("target", [L1, L2], ids=["loihi1", "loihi2"])
def test_feedback_costs_synapses_memory_and_axons(target):
    """A feedback edge's synapses and input axons land on the destination's cores and its spikes
    leave the source through output axons: the feedback net needs more than the same net without."""
    a, b = map_network(_fb_net(True), target), map_network(_fb_net(False), target)
    assert a.fits and b.fits
    fa, fb_ = a.layer("fc1"), b.layer("fc1")
    assert fa.input_axons_per_core == fb_.input_axons_per_core + 256       # + one axon per fc2 neuron
    assert fa.memory_bytes_per_core * fa.cores > fb_.memory_bytes_per_core * fb_.cores
    assert a.layer("fc2").output_axons_per_core > b.layer("fc2").output_axons_per_core
    assert a.layer("fc2").output_axons_per_core == b.layer("fc2").output_axons_per_core + \
        a.layer("fc2").neurons_per_core * fa.cores                       # every fc1 core it reaches
    total = lambda r, f: sum(getattr(l, f) * l.cores for l in r.layers)  # noqa: E731
    for f in ("memory_bytes_per_core", "input_axons_per_core", "output_axons_per_core"):
        assert total(a, f) > total(b, f), f
    assert a.parameters == b.parameters + 512 * 256


def test_feedback_can_make_a_layer_refused():
    """3,000 forward inputs fit a core's 4,096 input axons; 2,000 feedback inputs more do not."""
    ok = _fb_net(False, n_in=3000, n2=2000)
    bad = _fb_net(True, n_in=3000, n2=2000)
    assert map_network(ok, L2).fits and not check(ok, L2)
    rep = map_network(bad, L2)
    assert not rep.fits and not rep.layer("fc1").feasible
    assert "layer fc1: one neuron's fan-in of 3,000 synapses needs 5,000 input axons, a core takes 4,096" \
        in rep.problems
    assert any(v.rule == "fan_in" and "5,000 input axons" in v.message for v in check(bad, L2))


def test_feedback_desc_checks_shapes():
    fb = FeedbackDesc(src="fc2", kind="dense", in_shape=(4,), out_shape=(7,), n_weights=28)
    with pytest.raises(ValueError, match="feedback from fc2 ends in"):
        dataclasses.replace(dense("fc1", 8, 5), feedback=(fb,))
    net = NetDesc(layers=[dataclasses.replace(dense("fc1", 8, 7), feedback=(dataclasses.replace(fb, src="x"),)),
                          dense("out", 7, 2, kind="readout", threshold=0)], T=2, lam=1.0, decay=0)
    with pytest.raises(ValueError, match="feedback from unknown layer 'x'"):
        map_network(net, L2)
