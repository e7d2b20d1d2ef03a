"""Whole networks in the two forms (SpikingNet.saf_step vs SpikingNet.lif_step), docs/design.md#one-layer-two-forms.

With dyadic weights, biases, inputs and leak (lam in {1, 1/2, 1/4}) every value both forms compute
is exact in float64, so Eq. (5) must hold bit for bit: the SAF form's s[t] = a[t] - lam*a[t-1]
(computed here from the carried state a[t]) equals the LIF form's spikes, every layer, every step,
including neurons placed exactly on the threshold (u == theta)."""
from __future__ import annotations

import copy

import pytest
import torch

import saf.train.modules.network as network_mod
from saf.train.modules.network import Record, SpikingNet

torch.set_num_threads(1)

THETA = 1.0

DENSE = {"name": "dense", "input_shape": [10], "num_classes": 5,
         "layers": [{"type": "linear", "out": 24}, {"type": "linear", "out": 16}, {"type": "linear", "out": 12}]}
CONV = {"name": "conv-pool", "input_shape": [2, 6, 6], "num_classes": 4,
        "layers": [{"type": "conv", "out": 5, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                   {"type": "conv", "out": 6, "kernel": 3, "padding": 1}, {"type": "flatten"},
                   {"type": "linear", "out": 16}]}
CONV_FB = {"name": "conv-feedback", "input_shape": [2, 6, 6], "num_classes": 4,
           "layers": [{"type": "conv", "out": 5, "kernel": 3, "padding": 1},
                      {"type": "conv", "out": 6, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                      {"type": "flatten"}, {"type": "linear", "out": 14}, {"type": "linear", "out": 10}],
           "feedback": [{"src": 1, "dst": 0, "kernel": 3, "padding": 1},     # conv -> earlier conv
                        {"src": 3, "dst": 2},                                  # linear -> earlier linear
                        {"src": 3, "dst": 3}]}                                 # self-recurrence
SPECS = {"dense": DENSE, "conv": CONV, "conv-fb": CONV_FB}


def dyadic_net(spec: dict, lam: float, seed: int) -> SpikingNet:
    """No weight standardization; every weight/bias k/8 with small integer k; float64."""
    spec = copy.deepcopy(spec)
    spec["weight_standardization"] = False
    spec["neuron"] = {"lam": lam, "theta": THETA}
    torch.manual_seed(seed)
    net = SpikingNet(spec).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randint(-3, 5, p.shape, generator=g).double() / 8)
            else:
                p.copy_(torch.randint(-3, 4, p.shape, generator=g).double() / 8)
    return net


def dyadic_input(spec: dict, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, 5, (n, *spec["input_shape"]), generator=g).double() / 4


def plant_ties(net: SpikingNet, x: torch.Tensor) -> None:
    """Set the first layer's bias so that a few units of sample 0 get a current exactly theta: they
    sit on the threshold at t = 1 and (fire, reset to 0, same current) at every later step."""
    blk = net.blocks[0]
    with torch.no_grad():
        cur = blk(x[:1])[0]                                        # W x (no bias), [C, H, W] or [n]
        flat = cur.reshape(cur.shape[0], -1)[:, 0]                 # first position of each channel/unit
        for j in range(0, cur.shape[0], 2):
            blk.bias[j] = THETA - flat[j]


def run_saf(net, x, T):
    st = net.init_saf()
    spikes, pots, outs, states = [], [], [], []
    for _ in range(T):
        rec = Record()
        a_prev = st.a
        o, st = net.saf_step(x, st, rec)
        s_from_a = [a if ap is None else a - net.lam * ap for a, ap in zip(st.a, a_prev)]
        for s_rec, s_a in zip(rec.spikes, s_from_a):           # Record agrees with Eq. (5) done here
            assert torch.equal(s_rec, s_a)
        spikes.append(s_from_a)
        pots.append(rec.potentials)
        outs.append(o.detach())
        states.append(st.a)
    return spikes, pots, outs, states


def run_lif(net, x, T, mode="plain"):
    st = net.init_lif()
    spikes, pots, outs = [], [], []
    for _ in range(T):
        rec = Record()
        o, st = net.lif_step(x, st, mode, rec)
        spikes.append(rec.spikes)
        pots.append(rec.potentials)
        outs.append(o.detach())
    return spikes, pots, outs


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("lam", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("seed", [0, 1])
def test_saf_form_equals_lif_form_exactly(name, lam, seed):
    spec = SPECS[name]
    T = 16
    net = dyadic_net(spec, lam, seed)
    x = dyadic_input(spec, 6, seed)
    plant_ties(net, x)
    s_saf, u_saf, o_saf, a_saf = run_saf(net, x, T)
    s_lif, u_lif, o_lif = run_lif(net, x, T)
    ties = [0] * net.n_spiking
    fired = [0.0] * net.n_spiking
    for t in range(T):
        for l in range(net.n_spiking):
            assert torch.equal(s_saf[t][l], s_lif[t][l]), f"{name} lam={lam}: spikes differ, layer {l}, t={t + 1}"
            assert torch.equal(u_saf[t][l], u_lif[t][l]), f"{name} lam={lam}: potentials differ, layer {l}, t={t + 1}"
            assert set(s_lif[t][l].unique().tolist()) <= {0.0, 1.0}
            ties[l] += int((u_lif[t][l] == THETA).sum())
            fired[l] += float(s_lif[t][l].sum())
            # a[t] = sum_k lam^(t-k) s[k] (the SAF state is the weighted spike count)
            acc = sum(lam ** (t - k) * s_lif[k][l] for k in range(t + 1))
            assert torch.equal(a_saf[t][l], acc)
        assert torch.equal(o_saf[t], o_lif[t]), f"readout differs at t={t + 1}"
    # The comparison exercised ties (u == theta fires in both forms) and non-trivial activity.
    assert ties[0] >= T, ties
    assert sum(ties[1:]) > 0, f"no tie beyond the planted ones: {ties}"
    for l in range(net.n_spiking):
        assert 0 < fired[l] < T * s_lif[0][l].numel(), (l, fired)
    # Whole-sample inference agrees too.
    tot_saf, _ = net.infer(x, T, "saf")
    tot_lif, _ = net.infer(x, T, "lif")
    assert torch.equal(tot_saf, tot_lif)


@pytest.mark.parametrize("name", list(SPECS))
def test_training_modes_do_not_change_the_forward(name):
    """lif_step in "trace" (OTTT) and "bptt" modes and saf_step's "acc" readout with a graph compute
    the same spikes; the "acc" readout is sum_k lam^(t-k) o[k]."""
    lam, T = 0.5, 10
    spec = SPECS[name]
    net = dyadic_net(spec, lam, 5)
    x = dyadic_input(spec, 4, 5)
    s_ref, _, o_ref = run_lif(net, x, T)
    for mode in ("trace", "bptt"):
        s_m, _, o_m = run_lif(net, x, T, mode)
        for t in range(T):
            assert all(torch.equal(a, b) for a, b in zip(s_m[t], s_ref[t])), (mode, t)
            assert torch.equal(o_m[t], o_ref[t]), (mode, t)
    st = net.init_saf()
    for t in range(T):
        rec = Record()
        o_acc, st = net.saf_step(x, st, rec, readout="acc")
        assert o_acc.requires_grad
        assert all(torch.equal(a, b) for a, b in zip(rec.spikes, s_ref[t]))
        assert torch.equal(o_acc.detach(), sum(lam ** (t - k) * o_ref[k] for k in range(t + 1)))


def test_misprinted_bias_coefficient_would_be_caught(monkeypatch):
    """Negative control: with the paper's misprinted c[t] = sum_{tau<t} lam^(t-tau) the SAF form no
    longer matches the LIF form, so the exact comparison above can fail."""
    lam, T = 0.5, 8
    net = dyadic_net(DENSE, lam, 0)
    x = dyadic_input(DENSE, 6, 0)
    s_lif, _, _ = run_lif(net, x, T)
    monkeypatch.setattr(network_mod, "bias_coeff", lambda t, l: sum(l ** (t - k) for k in range(t)))
    s_bad, _, _, _ = run_saf(net, x, T)
    diff = sum(int((a != b).sum()) for t in range(T) for a, b in zip(s_bad[t], s_lif[t]))
    assert diff > 0
