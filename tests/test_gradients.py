"""Theorem 1 (SAF paper Sec. 4.2, App. A.3; feedback Sec. 4.3): SAF-E's per-step weight gradients
equal OTTT_O's. SAF-E runs the accumulation form (saf_step); OTTT_O runs the LIF form with the
presynaptic-trace substitution (lif_step mode="trace"): two different forward code paths whose
gradients must agree. SAF-F and OTTT_A only point the same way (positive inner product); BPTT
differs (sanity check that the comparison can fail).

Random float64 networks with scaled weight standardization, every parameter (weights, sWS gains,
biases, feedback weights, readout) compared."""
from __future__ import annotations

import copy

import pytest
import torch

from saf.train.functional.loss import ce_mse_loss
from saf.train.methods.registry import train_batch
from saf.train.modules.network import SpikingNet

torch.set_num_threads(1)

MLP = {"name": "mlp", "input_shape": [12], "num_classes": 5,
       "layers": [{"type": "linear", "out": 32}, {"type": "linear", "out": 24}, {"type": "linear", "out": 16}]}
MLP_FB = {"name": "mlp-fb", "input_shape": [12], "num_classes": 5,
          "layers": [{"type": "linear", "out": 32}, {"type": "linear", "out": 24}, {"type": "linear", "out": 16}],
          "feedback": [{"src": 2, "dst": 0}, {"src": 1, "dst": 1}]}
CONV = {"name": "conv", "input_shape": [2, 8, 8], "num_classes": 4, "gamma": 4.0,
        "layers": [{"type": "conv", "out": 6, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                   {"type": "conv", "out": 8, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                   {"type": "flatten"}, {"type": "linear", "out": 16}]}
CONV_FB = {"name": "conv-fb", "input_shape": [2, 8, 8], "num_classes": 4,
           "layers": [{"type": "conv", "out": 6, "kernel": 3, "padding": 1},
                      {"type": "conv", "out": 8, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                      {"type": "flatten"}, {"type": "linear", "out": 16}],
           "feedback": [{"src": 1, "dst": 0, "kernel": 3, "padding": 1}]}
SPECS = {"mlp": MLP, "mlp-fb": MLP_FB, "conv": CONV, "conv-fb": CONV_FB}

CASES = [("mlp", 0.5, "sigmoid"), ("mlp", 1.0, "sigmoid"), ("mlp", 0.25, "rect"),
         ("mlp-fb", 0.5, "sigmoid"), ("mlp-fb", 0.9, "sigmoid"),
         ("conv", 0.5, "sigmoid"), ("conv-fb", 0.5, "sigmoid"), ("conv-fb", 1.0, "rect")]

def make(name, lam, surrogate="sigmoid", seed=0, n=16):
    spec = copy.deepcopy(SPECS[name])
    spec["neuron"] = {"lam": lam, "theta": 1.0}
    torch.manual_seed(seed)
    net = SpikingNet(spec, surrogate=surrogate, surrogate_slope=4.0 if surrogate == "sigmoid" else 1.0).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():        # perturb the sWS gains so they are not all 1 (their grads differ)
        for mod in list(net.blocks) + list(net.fb):
            if mod.gain is not None:
                mod.gain.mul_(1.0 + 0.2 * torch.rand(mod.gain.shape, generator=g, dtype=torch.float64))
    x = torch.rand(n, *spec["input_shape"], generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(0, spec["num_classes"], (n,), generator=g)
    return net, x, y


def loss_fn(o, y):
    return ce_mse_loss(o, y, 0.05)


def per_step_grads(net, x, y, T, method):
    grads = {}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def cap(t):
        grads[t] = {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                    for k, p in net.named_parameters()}

    r = train_batch(net, x, y, T, method, opt, loss_fn, after_backward=cap, step_optimizer=False)
    return grads, r


def flat(g: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for _, v in sorted(g.items())])


def assert_forms_agree(net, x, T):
    """Precondition: the SAF and LIF forms fire identically on this float64 network (for a
    non-dyadic lam, a[t] - lam*a[t-1] carries rounding error, hence the 1e-12)."""
    _, saf = net.infer(x, T, "saf", record=True)
    _, lif = net.infer(x, T, "lif", record=True)
    for t in range(T):
        for l in range(net.n_spiking):
            assert torch.allclose(saf[t].spikes[l], lif[t].spikes[l], rtol=0, atol=1e-12), (t, l)
    rates = [sum(float(lif[t].spikes[l].mean()) for t in range(T)) / T for l in range(net.n_spiking)]
    assert all(0.02 < r < 0.98 for r in rates), rates
    return rates


@pytest.mark.parametrize("name,lam,surrogate", CASES)
def test_theorem1_saf_e_equals_ottt_o_per_step(name, lam, surrogate):
    T = 6
    net, x, y = make(name, lam, surrogate)
    assert_forms_agree(net, x, T)
    before = copy.deepcopy(net.state_dict())
    ge, re = per_step_grads(net, x, y, T, "saf-e")
    go, ro = per_step_grads(net, x, y, T, "ottt-o")
    for k, v in net.state_dict().items():            # step_optimizer=False really left weights alone
        assert torch.equal(v, before[k])
    assert sorted(ge) == sorted(go) == list(range(1, T + 1))
    max_diff, max_mag = 0.0, 0.0
    for t in range(1, T + 1):
        for k in ge[t]:
            d = float((ge[t][k] - go[t][k]).abs().max())
            max_diff = max(max_diff, d)
            max_mag = max(max_mag, float(go[t][k].abs().max()))
            assert d < 1e-10, f"{name}: parameter {k} at t={t}: |SAF-E - OTTT_O| = {d:.3e}"
    # Every parameter receives a non-zero gradient at some step (the comparison is not vacuous).
    for k in ge[1]:
        assert any(float(go[t][k].abs().max()) > 1e-6 for t in ge), k
    assert torch.allclose(re["logits"], ro["logits"], rtol=0, atol=1e-12)
    assert abs(re["loss"] - ro["loss"]) < 1e-12
    print(f"\n[theorem 1] {name} lam={lam} {surrogate}: max |grad SAF-E - grad OTTT_O| = {max_diff:.2e} "
          f"(largest gradient entry {max_mag:.2e})")


@pytest.mark.parametrize("name", ["mlp", "mlp-fb", "conv", "conv-fb"])
def test_saf_f_and_ottt_a_point_the_same_way_and_bptt_differs(name):
    T = 6
    net, x, y = make(name, 0.5, seed=3)
    assert_forms_agree(net, x, T)
    gf, rf = per_step_grads(net, x, y, T, "saf-f")
    ga, ra = per_step_grads(net, x, y, T, "ottt-a")
    gb, rb = per_step_grads(net, x, y, T, "bptt")
    go, _ = per_step_grads(net, x, y, T, "ottt-o")
    assert list(gf) == [T] and list(gb) == [T] and list(ga) == list(range(1, T + 1))
    f, a, b = flat(gf[T]), flat(ga[T]), flat(gb[T])
    # OTTT_A accumulates: its total equals the sum of OTTT_O's per-step gradients.
    o_sum = sum(flat(go[t]) for t in go)
    assert float((a - o_sum).abs().max()) < 1e-12
    cos = float(f @ a / (f.norm() * a.norm()))
    assert cos > 0, f"SAF-F vs OTTT_A cosine {cos}"
    per_param = {k: float((gf[T][k].reshape(-1) @ ga[T][k].reshape(-1))
                          / (gf[T][k].norm() * ga[T][k].norm() + 1e-300)) for k in gf[T]}
    # BPTT has the same forward and loss as OTTT_A but a different gradient (temporal dependencies).
    assert torch.allclose(rb["logits"], ra["logits"], rtol=0, atol=1e-12)
    assert abs(rb["loss"] - ra["loss"]) < 1e-12
    rel = float((b - a).norm() / a.norm())
    assert rel > 1e-2, f"BPTT gradient indistinguishable from OTTT_A (rel diff {rel})"
    cos_b = float(b @ a / (b.norm() * a.norm()))
    print(f"\n[SAF-F vs OTTT_A] {name}: cosine = {cos:.4f} (per parameter min {min(per_param.values()):.4f}); "
          f"BPTT vs OTTT_A: relative diff {rel:.3f}, cosine {cos_b:.4f}")


def test_saf_e_is_not_shifted_by_a_step():
    """Sanity check that Theorem 1's comparison is sharp: SAF-E at step t does not match OTTT_O at
    step t-1, and a SAF-E run with a different leak does not match either."""
    T = 4
    net, x, y = make("mlp-fb", 0.5)
    ge, _ = per_step_grads(net, x, y, T, "saf-e")
    go, _ = per_step_grads(net, x, y, T, "ottt-o")
    assert float((flat(ge[3]) - flat(go[2])).abs().max()) > 1e-4
    other = copy.deepcopy(net)
    other.lam = 0.25
    g2, _ = per_step_grads(other, x, y, T, "saf-e")
    assert float((flat(g2[T]) - flat(go[T])).abs().max()) > 1e-4
