"""Small random float64 SpikingNets (MLP and conv, with and without feedback) and the per-step gradient capture
the gradient tests compare: SAF-E vs OTTT_O (test_gradients.py) and the same on event frames (test_train_trains.py)."""
from __future__ import annotations

import copy

import torch

from saf.train.functional.loss import ce_mse_loss
from saf.train.methods.registry import train_batch
from saf.train.modules.network import SpikingNet

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
