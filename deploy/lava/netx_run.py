"""The `netx` backend: lava-dl's own loader (lava.lib.dl.netx.hdf5.Network) builds the network from a netx
file and Lava runs it in Loihi2SimCfg fixed_pt. Nothing of saf's IR enters the Lava network: the file is the
bundle's source.net (a `saf import` of a .net file) or, for any other bundle, the .net file saf export
--target netx writes from the graph (export/netx/write.py).

Schedule (export/netx/to_graph.py): netx's layer k answers k + d steps after its input (d = 1 when the
first layer is a synapse fed by Network.inp); the network is built with netx's own reset_interval = T and
reset_offset = d, so every layer's state is zeroed at the start of each sample's window and samples stream
back to back. x_q enters as graded a_in through a stock io.source.RingBuffer (XYZ order, as netx's ports);
the input transform's bias is the input neuron's bias_mant (as lava-dl's own tests set it). Spikes are read
with stock io.sink.RingBuffer processes on each layer's out port. The readout: the spike count of the last
layer, or, when that layer is netx's neuron-less integrator, its v >> 6 at the end of each window (a Lava
Monitor on v).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from saf.deploy.lava.graph import let_lava_choose_fork  # noqa: F401 - Lava's fork start method first
from saf.export.ir import Graph
from saf.export.result import BackendResult


def netx_missing() -> str:
    """Why lava-dl's netx cannot be used here ("" when it can)."""
    try:
        import lava.lib.dl.netx  # noqa: F401
    except ImportError as e:
        return (f"lava-dl is not importable ({type(e).__name__}: {e}); install it with pip install --no-deps "
                f"lava-dl==0.6.0 opencv-python-headless (docs/netx.md)")
    return ""


def _xyz(a: np.ndarray, shape: tuple) -> np.ndarray:
    """[..., C*H*W] (C-order) -> [..., W, H, C] (netx's XYZ port order); flat vectors unchanged."""
    if len(shape) == 1:
        return a
    c, h, w = shape
    return a.reshape(*a.shape[:-1], c, h, w).swapaxes(-1, -3)


def _chw(a: np.ndarray) -> np.ndarray:
    """netx port data [W, H, C, steps] or [N, steps] -> [steps, C*H*W]."""
    a = np.moveaxis(a, -1, 0)
    if a.ndim == 4:
        a = a.transpose(0, 3, 2, 1)
    return a.reshape(a.shape[0], -1)


def run_netx_file(net_file, graph: Graph, xq: np.ndarray, record_spikes: bool = True) -> BackendResult:
    """Run x_q [N, ...] through netx's network of `net_file` (module docstring)."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.conv import utils as conv_utils
    from lava.proc.monitor.process import Monitor

    conv_utils.TORCH_IS_AVAILABLE = False          # as lava-dl's own netx tests run it (numpy conv)
    t0 = time.perf_counter()
    meta = graph.meta.get("netx") or {}
    d, T = int(meta.get("input_delay", 0)), int(graph.T)
    frames = graph.input_frames(xq)                 # [N, T, n_in]
    N = len(frames)
    net = netx.hdf5.Network(net_config=str(net_file), reset_interval=T, reset_offset=d,
                            input_message_bits=int(meta.get("input_message_bits", 0)))
    L = len(net.layers)
    steps = N * T + L + d
    data = np.zeros((steps, frames.shape[-1]), dtype=np.int64)
    data[:N * T] = frames.reshape(N * T, -1)
    flat = len(net.inp.shape) == 1                  # a dense first layer reads the C-order vector
    data = np.moveaxis(data if flat else _xyz(data, tuple(graph.input_shape)), 0, -1)
    src = io.source.RingBuffer(data=data.astype(np.int32))
    first = net.in_layer
    src.s_out.connect(first.neuron.a_in if d == 0 else first.synapse.s_in)
    tr = (meta.get("input_transform") or {})
    if tr.get("bias"):
        net.in_layer.neuron.bias_mant.init = np.full(net.in_layer.neuron.bias_mant.shape, int(tr["bias"]), dtype=np.int32)
    sinks = []
    for layer in net.layers:
        s = io.sink.RingBuffer(shape=layer.neuron.s_out.shape, buffer=steps)
        layer.neuron.s_out.connect(s.a_in)
        sinks.append(s)
    integrator = L == len(graph.layers)             # netx built the readout too: the neuron-less last dense
    mon = None
    if integrator:
        mon = Monitor()
        mon.probe(net.layers[-1].neuron.v, steps)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt", select_sub_proc_model=True))
        raw = [_chw(np.asarray(s.data.get())) for s in sinks]
        v = None
        if mon is not None:
            v = np.asarray(mon.get_data()[net.layers[-1].neuron.name]["v"]).reshape(steps, -1)
    finally:
        net.stop()
    spikes = []
    for k in range(L - int(integrator)):
        start = d + k                                # 0-based Lava step of layer k's logical step 1, sample 0
        spikes.append(raw[k][start:start + N * T].reshape(N, T, -1) != 0)
    if integrator:
        ends = d + (L - 1) + np.arange(N) * T + (T - 1)
        # v = (sum of W s) << 6 over the window; a readout bias B (saf's R adds T B) is added here, not by netx
        readout = (v[ends].astype(np.int64) >> 6).reshape(N, -1) + T * graph.readout.bias.astype(np.int64)
    else:
        readout = spikes[-1].sum(axis=1).astype(np.int64) @ graph.readout.weight.T.astype(np.int64)
    info = {"lava_steps": steps, "tag": "fixed_pt", "loader": "lava.lib.dl.netx.hdf5.Network",
            "reset_interval": T, "reset_offset": d, "netx_layers": L}
    return BackendResult(backend="netx", readout=readout, spikes=spikes if record_spikes else None,
                         seconds=time.perf_counter() - t0, info=info)


def run_netx(net_bytes: bytes, graph: Graph, xq: np.ndarray, record_spikes: bool = True) -> BackendResult:
    """run_netx_file on a .net file's bytes (written to a temporary file: netx opens a path)."""
    with tempfile.TemporaryDirectory(prefix="saf-netx-") as tmp:
        p = Path(tmp) / "network.net"
        p.write_bytes(net_bytes)
        return run_netx_file(p, graph, xq, record_spikes)
