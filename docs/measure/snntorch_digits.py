"""The snnTorch net the measurement scripts train on sklearn digits, as an snnTorch user would: Conv2d(1, 8, 3,
pad 1) -> Leaky -> AvgPool2d(2) -> Flatten -> Linear(128, 32) -> Leaky or RLeaky -> Linear(32, 10), the image
fed every step, the last Linear summed over T; BPTT with AdamW (lr 1e-2, weight decay 0.05), batches of 64.

It is the recipe of the NIR tests' net (tests/saf_test_helpers/nir_nets.py), kept here as the scripts' own
code: a measurement script imports no test (tests/test_layout.py). Same seed, same thread count: same net
(rleaky_quantization.py measures the test's RLeaky net that way). Imported by its sibling scripts (Python puts
a script's folder on sys.path)."""
from __future__ import annotations

import torch
import torch.nn as nn

T = 6


def snntorch_net(beta: float = 0.5, recurrent: bool = False, seed: int = 0) -> nn.Sequential:
    """Per-neuron beta and threshold (a scalar beta writes a NIR LIF of shape [] that NIR cannot type); subtract
    reset. The RLeaky is built first: its recurrent Linear draws from the seeded generator before the others."""
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    sg = surrogate.fast_sigmoid(slope=5)
    per_neuron = lambda shape: dict(beta=torch.full(shape, beta), threshold=torch.ones(shape),  # noqa: E731
                                    reset_mechanism="subtract", init_hidden=True, spike_grad=sg)
    hidden = snn.RLeaky(linear_features=32, **per_neuron((32,))) if recurrent else snn.Leaky(**per_neuron((32,)))
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), snn.Leaky(**per_neuron((8, 8, 8))), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(128, 32), hidden, nn.Linear(32, 10))


def snntorch_run(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The readout summed over T steps [B, 10], hidden states reset first."""
    from snntorch import utils
    utils.reset(net)
    return sum(net(x) for _ in range(T))


def train(net: nn.Sequential, data, epochs: int = 6, seed: int = 0, threads: int = 0) -> nn.Sequential:
    """threads > 0: torch's thread count while training (it changes the float sums, hence the net)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    x, y = data.x_train.float(), data.y_train
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), 64):
                idx = perm[i:i + 64]
                loss = nn.functional.cross_entropy(snntorch_run(net, x[idx]) / T, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(before)
    return net


def export(net: nn.Sequential, path) -> None:
    """snnTorch's own exporter, the batch dimension ignored, written with nir.write."""
    import nir
    from snntorch.export_nir import export_to_nir
    with torch.no_grad():
        graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    nir.write(str(path), graph)
