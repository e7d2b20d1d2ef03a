"""Per-layer reset / compare modes (core/neuron_modes.py) in the spec, the float LIF form and training.

The float LIF form of SpikingNet is checked against a plain loop written here (numpy float64, explicit
reset rules, no call into train/), per mode x compare, on dense, conv and a recurrent (src == dst) layer."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saf.train.modules.network import SpikingNet
from saf.core.neuron_modes import ALL_MODES, COMPARES, RESETS, NeuronMode, method_refusal
from saf.train.spec import SpecError, layer_modes, plan

DENSE = {"input_shape": [6], "num_classes": 3, "weight_standardization": False,
         "neuron": {"lam": 0.5, "theta": 1.0},
         "layers": [{"type": "linear", "out": 12}, {"type": "linear", "out": 8}],
         "feedback": [{"src": 1, "dst": 1}]}                         # recurrent: a layer into itself
CONV = {"input_shape": [2, 6, 6], "num_classes": 3, "weight_standardization": False,
        "neuron": {"lam": 0.75, "theta": 1.0},
        "layers": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1},
                   {"type": "conv", "out": 4, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                   {"type": "flatten"}, {"type": "linear", "out": 8}],
        "feedback": [{"src": 1, "dst": 1, "kernel": 3, "padding": 1}]}


def with_modes(spec: dict, modes) -> dict:
    """spec with spiking layer i given modes[i] (a NeuronMode), keys written only where not default."""
    s = copy.deepcopy(spec)
    spiking = [ld for ld in s["layers"] if ld["type"] in ("conv", "linear")]
    for ld, m in zip(spiking, modes):
        ld["reset"], ld["compare"] = m.reset, m.compare
    return s


def reference_lif(net: SpikingNet, x: np.ndarray, T: int) -> tuple:
    """Logit sum and spikes [T, N, n] per layer of the float LIF form, literally (float64 numpy)."""
    lam, theta = net.lam, net.theta
    with torch.no_grad():
        W = [b.effective_weight().double().detach() for b in net.blocks]
        Bs = [b.bias.double().detach() for b in net.blocks]
        Wf = [f.effective_weight().double().detach() for f in net.fb]
        ro_w, ro_b = net.readout.effective_weight().double().detach(), net.readout.bias.double().detach()

    def syn(blk, w, inp):
        inp = torch.from_numpy(inp)
        for op in blk.pre:
            inp = F.avg_pool2d(inp, op[1]) if op[0] == "avgpool" else inp.flatten(1)
        out = F.conv2d(inp, w, None, blk.stride, blk.padding) if blk.kind == "conv" else inp @ w.T
        return out.numpy()

    n = len(net.blocks)
    u = [None] * n
    s = [None] * n
    spikes = [[] for _ in range(n)]
    total = 0.0
    for _ in range(T):
        inp, new_s = x, []
        for l, blk in enumerate(net.blocks):
            b = Bs[l].numpy().reshape((1, -1, 1, 1) if blk.kind == "conv" else (1, -1))
            cur = syn(blk, W[l], inp) + b
            for k, (src, dst) in enumerate(net.fb_edges):
                if dst == l and s[src] is not None:
                    cur = cur + syn(net.fb[k], Wf[k], s[src])
            m = net.modes[l]
            if u[l] is None:
                v = cur
            elif m.reset == "subtract":
                v = lam * (u[l] - theta * s[l]) + cur
            elif m.reset == "subtract-undecayed":
                v = lam * u[l] - theta * s[l] + cur
            else:
                v = lam * u[l] * (1.0 - s[l]) + cur
            sp = (v > theta) if m.compare == ">" else (v >= theta)
            u[l] = v
            new_s.append(sp.astype(np.float64))
            spikes[l].append(sp)
            inp = new_s[-1]
        s = new_s
        total = total + inp.reshape(len(x), -1) @ ro_w.numpy().T + ro_b.numpy()
    return total, [np.stack(sp) for sp in spikes]


def _net(spec, seed=0, gain=3.0) -> SpikingNet:
    torch.manual_seed(seed)
    net = SpikingNet(spec).double()
    with torch.no_grad():                     # fire often enough that resets matter
        for b in list(net.blocks) + list(net.fb):
            b.weight.mul_(gain)
    return net


@pytest.mark.parametrize("base", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("mode", ALL_MODES, ids=[f"{m.reset}{m.compare}" for m in ALL_MODES])
def test_float_lif_form_equals_plain_loop(base, mode):
    spec = with_modes(base, [mode, mode, mode])
    net = _net(spec)
    assert net.modes[0] == mode
    x = torch.rand(16, *spec["input_shape"], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    total, recs = net.infer(x, 6, "lif", record=True)
    ref_total, ref_spikes = reference_lif(net, x.numpy(), 6)
    for l in range(net.n_spiking):
        got = np.stack([r.spikes[l].numpy() > 0 for r in recs])
        assert got.reshape(ref_spikes[l].shape).tolist() == ref_spikes[l].tolist(), f"layer {l}"
        assert 0.02 < got.mean() < 0.98, "the test must exercise spikes and resets"
    np.testing.assert_allclose(total.numpy(), ref_total, rtol=0, atol=1e-9)


def test_mixed_modes_per_layer_and_modes_change_spikes():
    """Each layer keeps its own modes; and the modes matter (a different reset gives different spikes)."""
    mixed = [NeuronMode(">", "zero"), NeuronMode(">=", "subtract-undecayed"), NeuronMode(">", "subtract")]
    net = _net(with_modes(CONV, mixed))
    assert net.modes == mixed
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, recs = net.infer(x, 6, "lif", record=True)
    _, ref = reference_lif(net, x.numpy(), 6)
    for l in range(3):
        assert np.stack([r.spikes[l].numpy() > 0 for r in recs]).tolist() == ref[l].tolist()
    default = _net(CONV)
    _, recs_d = default.infer(x, 6, "lif", record=True)
    assert any(not torch.equal(a.spikes[0], b.spikes[0]) for a, b in zip(recs, recs_d))


@pytest.mark.parametrize("compare", COMPARES)
def test_float_tie_fires_only_with_ge(compare):
    """A current of exactly theta: fires at step 1 with >=, not with > (the tie)."""
    spec = {"input_shape": [1], "num_classes": 2, "weight_standardization": False,
            "neuron": {"lam": 0.5, "theta": 1.0}, "layers": [{"type": "linear", "out": 1, "compare": compare}]}
    net = SpikingNet(spec).double()
    with torch.no_grad():
        net.blocks[0].weight.fill_(0.5)
        net.blocks[0].bias.fill_(0.5)
    _, recs = net.infer(torch.ones(1, 1, dtype=torch.float64), 1, "lif", record=True)
    assert float(recs[0].potentials[0]) == 1.0
    assert float(recs[0].spikes[0]) == (1.0 if compare == ">=" else 0.0)


def test_spec_keys_validated_with_one_line():
    spec = with_modes(DENSE, [NeuronMode(">", "zero")])
    assert layer_modes(spec) == [NeuronMode(">", "zero"), NeuronMode()]
    assert plan(DENSE).layers[0].mode == NeuronMode()          # absent keys: the defaults
    bad = copy.deepcopy(DENSE)
    bad["layers"][1]["reset"] = "hard"
    with pytest.raises(SpecError, match=r"layer 1 \(linear\) \(spiking layer 1\): 'reset' must be one of"):
        plan(bad)
    bad = copy.deepcopy(DENSE)
    bad["layers"][0]["compare"] = "=>"
    with pytest.raises(SpecError, match=r"layer 0 .*'compare' must be one of '>=', '>', got '=>'"):
        plan(bad)
    bad = copy.deepcopy(CONV)
    bad["layers"][2]["reset"] = "zero"                         # glue layers take no modes
    with pytest.raises(SpecError, match="unknown key 'reset'"):
        plan(bad)
    assert set(RESETS) == {"subtract", "subtract-undecayed", "zero"}


def test_saf_form_and_other_methods_refuse_modes():
    spec = with_modes(DENSE, [NeuronMode(">=", "zero")])
    net = SpikingNet(spec)
    assert net.float_form == "lif" and SpikingNet(DENSE).float_form == "saf"
    with pytest.raises(ValueError, match="SAF form is defined only for reset 'subtract'"):
        net.infer(torch.rand(2, 6), 3, "saf")
    modes = layer_modes(spec)
    for method in ("saf-e", "saf-f", "ottt-o", "ottt-a", "ide", "dsr"):
        msg = method_refusal(method, modes)
        assert "\n" not in msg and "--method bptt" in msg and f"--method {method}" in msg
    assert method_refusal("bptt", modes) == "" and method_refusal("saf-e", layer_modes(DENSE)) == ""


@pytest.mark.parametrize("mode", [NeuronMode(">", "zero"), NeuronMode(">", "subtract-undecayed")],
                         ids=["zero>", "undecayed>"])
def test_bptt_trains_a_spec_with_modes(mode):
    """BPTT's surrogate gradient flows through the same spikes; a few steps lower the loss."""
    from saf.train.methods.registry import train_batch
    torch.manual_seed(0)
    net = SpikingNet(with_modes(DENSE, [mode, mode]))
    x, y = torch.rand(32, 6), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = [train_batch(net, x, y, 4, "bptt", opt, F.cross_entropy)["loss"] for _ in range(15)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.blocks.parameters())


@pytest.mark.parametrize("mode", [m for m in ALL_MODES if not m.is_default], ids=lambda m: f"{m.reset}{m.compare}")
def test_fold_carries_modes_and_its_float_check_runs_them(mode):
    """export/fold: every FloatLayer (and so every IR layer) carries the spec's modes, and the folded float
    forward pass (a second code path) gives the network's own LIF spikes with them."""
    from saf.export.fold.snn import fold_network, float_forward
    net = _net(with_modes(CONV, [mode, NeuronMode(), mode]))
    layers, fb = fold_network(net)
    assert [(l.reset, l.compare) for l in layers[:-1]] == [(mode.reset, mode.compare), ("subtract", ">="),
                                                           (mode.reset, mode.compare)]
    x = torch.rand(8, 2, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tot, recs = net.infer(x, 6, "lif", record=True)
    tot2, spikes = float_forward(layers, fb, x.numpy(), 6, net.lam, net.theta)
    assert np.abs(tot.numpy() - tot2).max() < 1e-9
    for t in range(6):
        for i, sp in enumerate(spikes):
            assert np.array_equal(recs[t].spikes[i].flatten(1).numpy() > 0.5, sp[:, t])
