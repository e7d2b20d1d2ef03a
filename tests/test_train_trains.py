"""Training on time-varying input x[t] ([N, T, *shape]: event frames, encoded trains).

Theorem 1 on trains: SAF-E (accumulation form, a_in[t] = lam a_in[t-1] + x[t]) and OTTT_O (LIF form
with the presynaptic trace of the input) give equal per-step gradients; the same train reversed in
time gives others (the comparison can fail). Every method trains on an N-MNIST folder."""
from __future__ import annotations

import copy

import pytest
import torch

from saf_test_helpers.event_files import write_nmnist_folder
from saf_test_helpers.grad_nets import SPECS, assert_forms_agree, flat, make, per_step_grads

from saf.deploy.cli.train import data_for  # noqa: E402
from saf.train.data import load_dataset  # noqa: E402
from saf.train.methods.registry import METHODS  # noqa: E402
from saf.train.run.trainer import TrainConfig, Trainer  # noqa: E402

torch.set_num_threads(1)


def trains(name, n, T, seed):
    g = torch.Generator().manual_seed(seed)
    shape = SPECS[name]["input_shape"]
    return (torch.rand(n, T, *shape, generator=g, dtype=torch.float64) < 0.5).double() * 2.0


@pytest.mark.parametrize("name,lam", [("mlp", 0.5), ("mlp-fb", 0.5), ("conv", 0.5), ("conv-fb", 1.0)])
def test_theorem1_holds_on_spike_trains(name, lam):
    T = 6
    net, _, y = make(name, lam)
    x = trains(name, len(y), T, seed=7)
    assert_forms_agree(net, x, T)
    ge, re = per_step_grads(net, x, y, T, "saf-e")
    go, ro = per_step_grads(net, x, y, T, "ottt-o")
    for t in range(1, T + 1):
        d = float((flat(ge[t]) - flat(go[t])).abs().max())
        assert d < 1e-10, f"{name} t={t}: |SAF-E - OTTT_O| = {d:.3e}"
    assert torch.allclose(re["logits"], ro["logits"], rtol=0, atol=1e-12)
    gr, _ = per_step_grads(net, x.flip(1), y, T, "ottt-o")
    assert float((flat(gr[T]) - flat(ge[T])).abs().max()) > 1e-6


def test_constant_train_equals_the_image():
    net, x, y = make("mlp", 0.5)
    T = 5
    a, _ = net.infer(x, T, "saf")
    b, _ = net.infer(x[:, None].expand(-1, T, *x.shape[1:]).contiguous(), T, "saf")
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def nmnist_root(tmp_path_factory):
    return write_nmnist_folder(tmp_path_factory.mktemp("nm"), n_train=4, n_test=1, classes=range(4))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_event_frames(method, nmnist_root, tmp_path):
    spec = {"name": "ev", "input_shape": [2, 34, 34], "num_classes": 10,
            "layers": [{"type": "conv", "out": 4, "kernel": 3, "stride": 4, "padding": 1}, {"type": "flatten"},
                       {"type": "linear", "out": 16}]}
    path = tmp_path / "ev.json"
    path.write_text(__import__("json").dumps(spec))
    cfg = TrainConfig(model=str(path), dataset="nmnist", data_root=nmnist_root, method=method, T=3,
                      epochs=1, batch_size=8, optimizer="adam", lr=0.01, device="cpu", bin_by="count")
    data = data_for(cfg, load_dataset)
    tr = Trainer(cfg, tmp_path / "run", data, progress=False)
    before = copy.deepcopy(tr.net.state_dict())
    m = tr.fit()
    assert m and m[-1]["train_loss"] == m[-1]["train_loss"]          # finite, not NaN
    assert any(not torch.equal(v, before[k]) for k, v in tr.net.state_dict().items())
