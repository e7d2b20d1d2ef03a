"""sWS as one node that recomputes its intermediates in backward: value and gradients bit for bit those of
the plain ops, no weight-sized tensor saved (the memory `saf bench train --profile` found), a wrong
recomputation caught."""
from __future__ import annotations

import pytest
import torch

import saf.train.functional.ws as ws
from saf.train.functional.ws import scaled_ws, scaled_ws_ops
from saf.train.memory import SavedTensorMeter

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def recompute(monkeypatch):
    monkeypatch.setattr(ws, "RECOMPUTE", True)          # opt-in in training; what these tests are about


def _grads(fn, shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=dtype).requires_grad_(True)
    gain = (1 + 0.1 * torch.randn(shape[0], generator=g, dtype=dtype)).requires_grad_(True)
    up = torch.randn(shape, generator=g, dtype=dtype)
    out = fn(w, gain, 2.0)
    (out * up).sum().backward()
    return out.detach(), w.grad, gain.grad


@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (64, 32, 3, 3), (10, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recomputed_sws_is_bit_identical(shape, dtype):
    a = _grads(scaled_ws, shape, dtype)
    b = _grads(scaled_ws_ops, shape, dtype)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a[1].abs().sum() > 0 and a[2].abs().sum() > 0


def test_no_weight_sized_tensor_saved():
    w = torch.nn.Parameter(torch.randn(64, 32, 3, 3))
    gain = torch.nn.Parameter(torch.ones(64))
    for fn, expect_big in ((scaled_ws_ops, True), (scaled_ws, False)):
        meter = SavedTensorMeter([w, gain])
        with meter:                    # backward inside: the recomputation's transient graph is not counted
            out = fn(w, gain, 2.0)
            out.sum().backward()
        big = meter.peak >= 2 * w.numel() * w.element_size()
        assert big == expect_big, (fn.__name__, meter.peak)


def test_a_wrong_recomputation_is_caught(monkeypatch):
    """The recomputation in backward with another eps (a fault) changes the gradient: the bit-for-bit
    comparison above would catch it."""
    real = ws.scaled_ws_ops
    calls = {"n": 0}

    def drifting(weight, gain, gamma=1.0, eps=1e-4):
        calls["n"] += 1
        return real(weight, gain, gamma, eps if calls["n"] == 1 else eps * 2)   # forward right, backward not

    monkeypatch.setattr(ws, "scaled_ws_ops", drifting)
    a = _grads(ws.scaled_ws, (16, 3, 3, 3), torch.float32)
    monkeypatch.setattr(ws, "scaled_ws_ops", real)
    b = _grads(scaled_ws_ops, (16, 3, 3, 3), torch.float32)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
