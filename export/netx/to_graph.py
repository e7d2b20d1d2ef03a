"""netx layer records (read.py) -> the IR (export/ir.py), with the integers netx's Lava network holds.

Every netx neuron is Lava's stock LIF: F = 6 (u += a_in << 6, bias << 6, v > vth << 6), reset to zero,
compare ">", du = iDecay - 1 (4095: no current carried), one voltage decay dv = vDecay for the network.
- input layer with a neuron: an identity synapse (dense, or 1x1 conv on (C, H, W)) into LIF neurons, the
  transform's bias as the layer's bias. netx's Input block stores its transform but does not apply it: the
  host feeds a_in. saf's x_q is that a_in without the bias: x_q = round(gain * x) (input_scale = gain), and
  the bias joins every step as the neuron's bias (what lava-dl's own test does with bias_mant).
- input layer without a neuron: the shape only; the next layer's synapse reads binary spikes (1 bit).
- dense: weights = netx's effective integers (weights.py: optimize_weight_bits' exponent applied);
  dense_rec: the same with the recurrent matrix scaled together, as a one-step feedback edge onto itself.
- conv: the file's integers [C_out, C_in, kh, kw] (no exponent), cross-correlation on (C, H, W).
- a last dense layer with no neuron (netx's default: an integrator that never fires) is the readout;
  otherwise the readout counts the last layer's spikes (identity weights).
Latency (Graph.meta["netx"]): netx's layer k (0-based among the layers it builds) answers k + d steps after
its input (d = 1 when the first layer is a synapse fed by Network.inp, else 0); with netx's own
reset_interval = T and reset_offset = d, step t of layer k's window is the IR's step t.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from saf.export.ir import DECAY_ONE, Feedback, Graph, Layer
from saf.export.netx.errors import NetxError
from saf.export.netx.read import NetxLayer, read_netx
from saf.export.netx.weights import effective_dense
from saf.core.neuron_modes import COMPARE_GT, RESET_ZERO

FRAC_BITS = 6                 # Lava's LIF: activation, bias and threshold all << 6


def _spiking(name, kind, w, b, shapes: tuple, nrn, stride=1, padding=0) -> Layer:
    """A spiking IR layer with Lava's LIF semantics; shapes: (in_shape, out_shape)."""
    in_shape, out_shape = shapes
    return Layer(name=name, kind=kind, weight=np.asarray(w, np.int64), bias=np.asarray(b, np.int64),
                 in_shape=tuple(in_shape), out_shape=tuple(out_shape), threshold=int(nrn.vth), stride=stride,
                 padding=padding, frac_bits=FRAC_BITS, du=int(nrn.du), reset=RESET_ZERO, compare=COMPARE_GT)


def _input_layer(L: NetxLayer, shape: tuple) -> Layer:
    n = int(np.prod(shape))
    if len(shape) == 1:
        return _spiking("input", "dense", np.eye(n, dtype=np.int64), np.full(n, L.in_bias), (shape, shape), L.neuron)
    c = shape[0]
    w = np.eye(c, dtype=np.int64).reshape(c, c, 1, 1)
    return _spiking("input", "conv", w, np.full(c, L.in_bias), (shape, shape), L.neuron)


def _dense(path, L: NetxLayer, shape: tuple, last: bool):
    n_in, n_out = int(np.prod(shape)), int(np.prod(L.shape))
    w = L.weight.reshape(n_out, -1) if L.weight.ndim == 1 else L.weight
    if w.shape != (n_out, n_in):
        raise NetxError(f"{path}: {L.where}: weight {list(w.shape)} does not map its {n_in} inputs to {n_out} outputs")
    rec = None
    try:
        if L.weight_rec is not None:
            wr = L.weight_rec.reshape(n_out, -1) if L.weight_rec.ndim == 1 else L.weight_rec
            if wr.shape != (n_out, n_out):
                raise NetxError(f"{path}: {L.where}: weight_rec {list(wr.shape)} is not [{n_out}, {n_out}]")
            both = effective_dense(np.hstack([w, wr]))
            w, rec = both[:, :n_in], both[:, n_in:]
        else:
            w = effective_dense(w)
    except ValueError as e:
        raise NetxError(f"{path}: {L.where}: {e}") from None
    b = np.zeros(n_out, np.int64) if L.bias is None else L.bias
    if b.shape != (n_out,):
        raise NetxError(f"{path}: {L.where}: bias {list(b.shape)} does not match {n_out} neurons")
    if L.neuron is None:
        if not last or rec is not None:
            raise NetxError(f"{path}: {L.where}: a dense layer without a neuron is read only as the last layer "
                            f"(netx's non-firing integrator, saf's readout)")
        if np.any(b != 0):
            raise NetxError(f"{path}: {L.where}: a bias on the neuron-less output layer (netx adds it once to v, not "
                            f"every step) has no saf readout")
        return Layer(name=f"layer{L.index}", kind="readout", weight=w, bias=b, in_shape=(n_in,), out_shape=(n_out,),
                     frac_bits=FRAC_BITS), None
    return _spiking(f"layer{L.index}", "dense", w, b, ((n_in,), (n_out,)), L.neuron), rec


def _conv(path, L: NetxLayer, shape: tuple) -> Layer:
    w = L.weight
    if w.ndim == 5 and w.shape[4] == 1:
        w = w[..., 0]
    if len(shape) != 3 or w.ndim != 4 or w.shape[1] != shape[0] or w.shape[2] != w.shape[3]:
        raise NetxError(f"{path}: {L.where}: weight {list(L.weight.shape)} is not a square [C_out, {shape[0]}, k, k] "
                        f"kernel for its input {list(shape)}")
    k, s, p = int(w.shape[2]), L.stride, L.padding
    out = (int(w.shape[0]), (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
    if tuple(L.shape) != out:
        raise NetxError(f"{path}: {L.where}: shape {list(L.shape)}, its kernel, stride and padding give {list(out)}")
    if L.neuron is None:
        raise NetxError(f"{path}: {L.where}: has no neuron")
    b = np.zeros(out[0], np.int64) if L.bias is None else L.bias
    if b.shape != (out[0],):
        raise NetxError(f"{path}: {L.where}: bias {list(b.shape)} does not match {out[0]} channels")
    return _spiking(f"layer{L.index}", "conv", w, b, (shape, out), L.neuron, s, p)


def _walk(path, recs: list) -> tuple:
    """(IR layers, feedback, input shape, input record or None, netx layer index per IR layer)."""
    layers, feedback, index = [], [], []
    shape, first_in, flat = None, None, False
    for j, L in enumerate(recs):
        last = j == len(recs) - 1
        if L.kind == "input":
            if shape is not None:
                raise NetxError(f"{path}: {L.where}: an input layer after the first layer")
            shape, first_in = tuple(L.shape), L
            if len(shape) not in (1, 3) or min(shape) < 1:
                raise NetxError(f"{path}: {L.where}: shape {list(shape)} is neither (N,) nor (C, H, W)")
            if L.neuron is not None:
                layers.append(_input_layer(L, shape))
                index.append(L.index)
            continue
        if shape is None:
            raise NetxError(f"{path}: {L.where}: the network has no input layer before it (netx needs its shape)")
        if L.kind == "flatten":
            flat = True
            continue
        if L.kind == "conv":
            layer, rec = _conv(path, L, shape), None
        else:
            if len(shape) == 3 and shape[1] * shape[2] > 1 and not flat and layers:
                raise NetxError(f"{path}: {L.where}: reads a {list(shape)} map without a flatten layer before it")
            layer, rec = _dense(path, L, shape, last)
        flat = False
        if rec is not None:
            feedback.append(Feedback(src=len(layers), dst=len(layers), kind="dense", weight=rec))
        layers.append(layer)
        index.append(L.index)
        shape = tuple(layer.out_shape)
    if not any(l.spiking for l in layers):
        raise NetxError(f"{path}: the network has no spiking layer")
    if layers[-1].spiking:
        n = layers[-1].n_out
        layers.append(Layer(name="count", kind="readout", weight=np.eye(n, dtype=np.int64),
                            bias=np.zeros(n, np.int64), in_shape=(n,), out_shape=(n,), frac_bits=FRAC_BITS))
    return layers, feedback, first_in, index


def _decay(path, recs: list) -> int:
    dvs = [(L.index, L.neuron.dv) for L in recs if L.neuron is not None]
    for i, dv in dvs:
        if dv != dvs[0][1]:
            raise NetxError(f"{path}: layer {i}: vDecay {dv} differs from layer {dvs[0][0]}'s {dvs[0][1]}; saf's "
                            f"network has one voltage decay (train with one neuron setting for every layer)")
    return int(dvs[0][1]) if dvs else 0


def _dataset_shape(path, shape: tuple, dataset) -> tuple:
    """The input shape: the file's, or --dataset's images when the file's input is the same values flat (a
    dense layer reads them in C order, as slayer's users flatten them)."""
    if not dataset:
        return shape
    from saf.train.data import DatasetError, load_dataset
    try:
        want = tuple(load_dataset(dataset).input_shape)
    except DatasetError as e:
        raise NetxError(f"--dataset {dataset}: {e}") from None
    if int(np.prod(want)) != int(np.prod(shape)) or (len(shape) > 1 and want != shape):
        raise NetxError(f"--dataset {dataset}: its input is {list(want)}, {Path(path).name}'s is {list(shape)}")
    return want


def netx_graph(path, T: int, target: str = "loihi2", dataset=None) -> Graph:
    """The IR of netx file `path` run for T steps per sample (module docstring)."""
    path = Path(path)
    recs = read_netx(path)
    layers, feedback, first_in, index = _walk(path, recs)
    D = _decay(path, recs)
    with_neuron = first_in is not None and first_in.neuron is not None
    gain = int(first_in.gain) if with_neuron else 1
    if gain < 1:
        raise NetxError(f"{path}: layer {first_in.index} (input): transform weight {gain} must be >= 1 for saf's input scale")
    in_shape = _dataset_shape(path, tuple(first_in.shape), dataset)
    bits, scale, signed = (max(1, gain.bit_length()), float(gain), False) if first_in.in_quant is None \
        else first_in.in_quant
    meta = {"netx": {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "input_delay": 0 if with_neuron else 1, "layer_index": index,
                     "input_message_bits": 0 if with_neuron or (bits == 1 and not signed) else bits + int(signed),
                     "input_transform": {"weight": gain, "bias": int(first_in.in_bias)} if with_neuron else None,
                     "latency": "netx's layer k answers k + input_delay steps after its input; run with "
                                "reset_interval T and reset_offset input_delay its windows are the IR's steps 1..T"},
            "train_config": {"method": "netx", "dataset": dataset, "T": int(T)}}
    return Graph(layers=layers, T=int(T), lam=(DECAY_ONE - D) / DECAY_ONE, decay=D, input_shape=in_shape,
                 input_scale=scale, input_bits=int(bits), input_signed=bool(signed),
                 feedback=feedback, target=target, meta=meta)
