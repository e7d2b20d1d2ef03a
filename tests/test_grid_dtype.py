"""The grid forward's arithmetic type (issue 28, CUDA): every convolution and matrix product of the grid forward
gets float64 operands, in evaluation and in a training step. TF32 (cuBLAS, cuDNN) is a float32 mode, so it can
never apply to these forwards on CUDA, and every integer sum below 2^53 is exact in any summation order. The
recorder that checks this is shown to catch a float32 product."""
from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch.overrides import TorchFunctionMode

from saf.export.pipeline.grid import calibrate_grid
from saf.train.data import load_dataset
from saf.train.grid.forward import grid_run, grid_step, grid_weights, init_state, quantize
from saf.train.methods.registry import readout_for
from saf.train.modules.network import SpikingNet
from saf.train.spec import load_spec, with_neuron

PRODUCTS = (Fn.linear, Fn.conv2d, torch.matmul, torch.mm, torch.bmm, torch.addmm)


class ProductTypes(TorchFunctionMode):
    """Records the floating dtypes of the operands of each matrix product / convolution called."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.seen.append({a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()})
        return func(*args, **(kwargs or {}))


def only_float64(seen: list) -> bool:
    return bool(seen) and all(s == {torch.float64} for s in seen)


def _net(model: str):
    data = load_dataset("digits", T=4)
    torch.manual_seed(0)
    spec = with_neuron(load_spec(model), 0.5, 1.0)
    spec["T"] = 4
    net = SpikingNet(spec, readout=readout_for("bptt", 0.5))
    net.grid = calibrate_grid(net, {"method": "bptt", "T": 4}, data, "loihi")
    return net, data


def test_grid_forward_multiplies_in_float64_only():
    for model in ("mlp-digits", "conv-digits"):
        net, data = _net(model)
        with ProductTypes() as rec:
            grid_run(net, net.grid, data.x_test[:8])
        assert only_float64(rec.seen), (model, rec.seen)


def test_grid_training_step_multiplies_in_float64_only():
    """The forward of a BPTT training step (gradients on; its backward runs on the same float64 tensors)."""
    net, data = _net("conv-digits")
    with ProductTypes() as rec:
        wq, st, xq = grid_weights(net, net.grid), init_state(net), quantize(net.grid, data.x_train[:8])
        for _ in range(4):
            o, _, st = grid_step(net, net.grid, xq, st, "bptt", wq)
        torch.nn.functional.cross_entropy(o, data.y_train[:8]).backward()
    assert only_float64(rec.seen), rec.seen
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_the_recorder_catches_a_float32_product():
    with ProductTypes() as rec:
        Fn.linear(torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64))
        Fn.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert not only_float64(rec.seen)
    assert not only_float64([])                        # nothing recorded proves nothing
