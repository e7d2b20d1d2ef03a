"""A bundle's graph as a lava-dl netx file (`saf export RUN --target netx --out model.net`).

netx builds every layer as Lava's stock LIF, so only graphs that are exactly that are written
(netx_problem names the first rule broken and what to train instead): reset to zero and compare ">" on every
layer, F = 6, no initial potential or current, no sum-pool stage, feedback only as a dense layer onto itself
(dense_rec), a readout that does not leak and is not first-spike, and dense weights netx's
optimize_weight_bits maps back to themselves (weights.py).
Layout: input (shape only: the first synapse reads x_q through Network.inp, as graded messages of
input_message_bits when x_q is not binary: pass Network(..., input_message_bits=B); the dataset
saf_input_quantization, which netx ignores, keeps x_q's bits, scale and sign for saf import), then conv / flatten /
dense / dense_rec layers with CUBA neurons (iDecay = du + 1, vDecay = D, vThMant = TH, refDelay 1), then
the readout as a dense layer without a neuron (netx's integrator: v = (sum of W s) << 6; its bias, T B over a
sample, is left to the host). Every layer answers one step after the one before it (export/netx/to_graph.py).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from saf.export.ir import Graph
from saf.export.netx.errors import NetxError
from saf.export.netx.read import SAF_INPUT
from saf.export.netx.weights import effective_dense
from saf.core.neuron_modes import COMPARE_GT, RESET_ZERO

FRAC_BITS = 6
TRAIN_HINT = "train with --method bptt and per-layer reset: zero, compare: '>' (Lava's LIF), or export --target loihi"


def _dense_problem(w: np.ndarray) -> str:
    try:
        ok = np.array_equal(effective_dense(w), w)
    except ValueError as e:
        return str(e)
    return "" if ok else "netx's weight scaling (optimize_weight_bits) would change these integers (odd weights?)"


def netx_problem(g: Graph) -> str:
    """The first rule netx cannot hold `g` by, with what to do instead ("" when it can)."""
    for i, l in enumerate(g.layers):
        if not l.spiking:
            continue
        if l.reset != RESET_ZERO or l.compare != COMPARE_GT:
            return f"layer {l.name}: reset {l.reset!r} / compare {l.compare!r}; netx's LIF resets to zero and fires on v > vth: {TRAIN_HINT}"
        if int(l.frac_bits) != FRAC_BITS:
            return f"layer {l.name}: F = {l.frac_bits}; Lava's LIF holds F = 6 (export with a leak and T that need no more)"
        if int(l.v0) or l.has_initial_current:
            return f"layer {l.name}: an initial potential or current; netx's LIF starts at 0 (train without alpha firing / Synaptic bias)"
        if int(l.in_pool) > 1:
            return f"layer {l.name}: a sum-pool stage; netx builds no pooling (export with --sum-pool off to fold it)"
        if l.kind == "dense" and _dense_problem(l.weight):
            return f"layer {l.name}: {_dense_problem(l.weight)}"
    for f in g.feedback:
        if f.src != f.dst or f.kind != "dense":
            return f"feedback {f.src} -> {f.dst}: netx holds feedback only as a dense layer onto itself (dense_rec)"
    r = g.readout
    if r.first_spike or int(r.decay):
        return "the readout leaks or reads first spikes; netx's output integrator only sums (train with a summing readout)"
    return _dense_problem(r.weight) and f"readout: {_dense_problem(r.weight)}"


def _text(h, key: str, value: str) -> None:
    h.create_dataset(key, data=np.array([value.encode("ascii")], dtype="S10"))


def _neuron(h, l, decay: int) -> None:
    n = h.create_group("neuron")
    _text(n, "type", "CUBA")
    for key, v in (("iDecay", int(l.du) + 1), ("vDecay", int(decay)), ("vThMant", int(l.threshold)), ("refDelay", 1)):
        n.create_dataset(key, data=v)
    n.create_dataset("gradedSpike", data=False)


def _write(g: Graph, path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        lg = f.create_group("layer")
        k = 0

        def group(kind: str, shape) -> "h5py.Group":
            nonlocal k
            h = lg.create_group(str(k))
            k += 1
            _text(h, "type", kind)
            h.create_dataset("shape", data=np.asarray(shape, dtype=np.int64))
            return h

        group("input", g.input_shape).create_dataset(
            SAF_INPUT, data=np.array([g.input_bits, g.input_scale, int(g.input_signed)], dtype=np.float64))
        shape = tuple(g.input_shape)
        for i, l in enumerate(g.layers):
            if l.kind != "conv" and len(shape) > 1:
                group("flatten", (int(np.prod(shape)),))
            fb = [fe for fe in g.feedback if fe.dst == i]
            h = group("dense_rec" if fb else ("conv" if l.kind == "conv" else "dense"), l.out_shape)
            h.create_dataset("weight", data=l.weight.astype(np.float32))
            if fb:
                h.create_dataset("weight_rec", data=fb[0].weight.astype(np.float32))
            if l.spiking:
                h.create_dataset("bias", data=l.bias.astype(np.float32))
                _neuron(h, l, g.decay)
            if l.kind == "conv":
                for key, v in (("stride", l.stride), ("padding", l.padding), ("dilation", 1)):
                    h.create_dataset(key, data=np.array([v, v]))
                h.create_dataset("groups", data=1)
            shape = tuple(l.out_shape)


def netx_meta(g: Graph) -> dict:
    """Graph.meta["netx"] of a file write_netx wrote (the netx backend's schedule and input messages)."""
    binary = int(g.input_bits) == 1 and not g.input_signed
    return {"input_delay": 1, "input_transform": None, "written_by": "saf export --target netx",
            "input_message_bits": 0 if binary else int(g.input_bits) + int(g.input_signed)}


def write_netx(g: Graph, out, force: bool = False) -> Path:
    """`g` as a netx file at `out`, replaced atomically (an existing file only with force)."""
    why = netx_problem(g)
    if why:
        raise NetxError(f"cannot write {g.meta.get('spec', {}).get('name', 'the network')} as netx: {why}")
    out = Path(out)
    if out.exists() and not force:
        raise NetxError(f"--out {out}: exists (pass --force to replace it)")
    if out.exists() and not out.is_file():
        raise NetxError(f"--out {out}: not a file")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".saf-tmp", dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    try:
        _write(g, Path(tmp))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def netx_bytes(g: Graph) -> tuple:
    """(the .net file's bytes, g with meta["netx"] for the netx backend)."""
    import copy

    with tempfile.TemporaryDirectory(prefix="saf-netx-") as tmp:
        p = write_netx(g, Path(tmp) / "network.net")
        data = p.read_bytes()
    g2 = copy.copy(g)
    g2.meta = dict(g.meta, netx=netx_meta(g))
    return data, g2
