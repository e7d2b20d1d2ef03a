"""What makes an IR record (export/ir.py) well formed: the closed kinds and modes, and the shape, range and
role checks each Layer and Feedback runs where it is made and every Graph runs in Graph.validate(). Each
refusal is one IRError line naming the layer or edge. What a target cannot hold (Loihi's 8-bit weights, a
dtype ONNX cannot carry exactly) is checked by that target (deploy/lava/graph.py, export/onnx_*.py)."""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from saf.train.grid.rules import DECAY_ONE
from saf.core.neuron_modes import COMPARES, RESETS, NeuronMode
from saf.core.errors import SafError

LayerKind = Literal["dense", "conv", "readout"]       # readout: dense into integrators (no threshold, no reset)
SynapseKind = Literal["dense", "conv"]                # a feedback edge's synapse
Reset = Literal["subtract", "subtract-undecayed", "zero"]
Compare = Literal[">=", ">"]
LAYER_KINDS = get_args(LayerKind)
SYNAPSE_KINDS = get_args(SynapseKind)
if set(get_args(Reset)) != set(RESETS) or set(get_args(Compare)) != set(COMPARES):   # one list: neuron_modes.py
    raise ImportError("export/ir_check.py: Reset/Compare differ from core/neuron_modes.py's RESETS/COMPARES")
DU_MAX = DECAY_ONE - 1                                # 12-bit current decay: 4095 keeps no current


class IRError(SafError, ValueError):
    """A malformed IR record: one line naming the layer or edge and what is wrong."""


def _one_of(where: str, what: str, v, allowed: tuple) -> None:
    if v not in allowed:
        raise IRError(f"{where}: unknown {what} {v!r} (expected {', '.join(map(str, allowed))})")


def _integers(where: str, what: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise IRError(f"{where}: {what} must be integers, got dtype {a.dtype}")
    return a


def conv_out(n: int, k: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - k) // stride + 1


def check_synapse(where: str, kind: str, w, in_shape: tuple, out_shape: tuple, stride: int, pad: int) -> None:
    """Weights `w` of a dense/conv synapse map in_shape to out_shape (conv: torch's [C_out, C_in, kh, kw])."""
    w = _integers(where, "weights", w)
    if int(stride) < 1 or int(pad) < 0:
        raise IRError(f"{where}: needs stride >= 1 and padding >= 0, got {stride} and {pad}")
    if kind == "conv":
        if w.ndim != 4 or len(in_shape) != 3 or len(out_shape) != 3 or w.shape[1] != in_shape[0]:
            raise IRError(f"{where}: conv weight {w.shape} does not fit input shape {tuple(in_shape)}")
        want = (w.shape[0], conv_out(in_shape[1], w.shape[2], stride, pad), conv_out(in_shape[2], w.shape[3], stride, pad))
        if min(want[1:]) < 1 or tuple(out_shape) != want:
            raise IRError(f"{where}: conv output shape {tuple(out_shape)} != computed {want}")
    elif w.shape != (int(np.prod(out_shape)), int(np.prod(in_shape))):
        raise IRError(f"{where}: dense weight {w.shape} should be {(int(np.prod(out_shape)), int(np.prod(in_shape)))}")


def check_layer(l) -> None:
    """One Layer on its own: kind, modes, shapes, ranges, and the fields only its role may set."""
    where = f"layer {l.name!r}"
    _one_of(where, "kind", l.kind, LAYER_KINDS)
    try:
        NeuronMode(l.compare, l.reset)
    except ValueError as e:
        raise IRError(f"{where}: {e}") from None
    k = int(l.in_pool)
    if k < 1 or (k > 1 and (len(l.in_shape) != 3 or l.in_shape[1] % k or l.in_shape[2] % k)):
        raise IRError(f"{where}: sum pool {l.in_pool} does not divide its input {tuple(l.in_shape)}")
    check_synapse(where, "dense" if l.kind == "readout" else l.kind, l.weight, tuple(l.syn_in_shape),
                  tuple(l.out_shape), l.stride, l.padding)
    nb = l.out_shape[0] if l.kind == "conv" else int(np.prod(l.out_shape))
    if _integers(where, "bias", l.bias).shape != (nb,):
        raise IRError(f"{where}: bias must be {nb} integers, got shape {np.asarray(l.bias).shape}")
    if int(l.frac_bits) < 0:
        raise IRError(f"{where}: frac_bits must be >= 0, got {l.frac_bits}")
    if not 0 <= int(l.du) <= DU_MAX:
        raise IRError(f"{where}: du must be a 12-bit current decay in [0, {DU_MAX}], got {l.du}")
    if not 0 <= int(l.decay) <= DECAY_ONE:
        raise IRError(f"{where}: decay must be a 12-bit decay in [0, {DECAY_ONE}], got {l.decay}")
    _check_role(where, l, nb)


def _check_role(where: str, l, nb: int) -> None:
    """Readout-only fields (decay, first_spike) on a readout, spiking-only ones (v0, u0) on a spiking layer."""
    if l.kind == "readout":
        if int(l.v0) != 0 or l.u0 is not None:
            raise IRError(f"{where}: v0 and u0 belong to spiking layers, not to the readout")
        return
    if int(l.decay) != 0 or l.first_spike:
        raise IRError(f"{where}: decay and first_spike belong to the readout (a spiking layer leaks by Graph.decay)")
    if l.u0 is not None and _integers(where, "u0", l.u0).shape != (nb,):
        raise IRError(f"{where}: u0 must be {nb} integers like the bias, got shape {np.asarray(l.u0).shape}")


def check_feedback(fb) -> None:
    """One Feedback edge on its own (its shapes against the layers it joins: check_graph)."""
    where = f"feedback {fb.src}->{fb.dst}"
    _one_of(where, "kind", fb.kind, SYNAPSE_KINDS)
    _integers(where, "weights", fb.weight)
    if int(fb.stride) < 1 or int(fb.padding) < 0:
        raise IRError(f"{where}: needs stride >= 1 and padding >= 0, got {fb.stride} and {fb.padding}")


def check_graph(g) -> None:
    """A whole Graph: its records again (fields may have changed since they were made), then how they join."""
    if int(g.T) < 1:
        raise IRError(f"T must be >= 1, got {g.T}")
    if not 0 <= int(g.decay) <= DECAY_ONE:
        raise IRError(f"decay must be a 12-bit decay in [0, {DECAY_ONE}], got {g.decay}")
    if not g.layers or g.layers[-1].kind != "readout":
        raise IRError("the last layer must be the readout")
    names = [l.name for l in g.layers]
    if len(set(names)) != len(names):
        raise IRError(f"layer names must be unique, got {names}")
    shape = tuple(g.input_shape)
    for i, l in enumerate(g.layers):
        check_layer(l)
        if l.kind == "readout" and i != len(g.layers) - 1:
            raise IRError(f"layer {l.name!r}: only the last layer may be a readout")
        if int(np.prod(l.in_shape)) != int(np.prod(shape)):
            raise IRError(f"layer {l.name!r}: input shape {tuple(l.in_shape)} does not match the previous output {shape}")
        shape = tuple(l.out_shape)
    n_sp = len(g.layers) - 1
    for fb in g.feedback:
        check_feedback(fb)
        where = f"feedback {fb.src}->{fb.dst}"
        if not 0 <= fb.dst <= fb.src < n_sp:
            raise IRError(f"{where}: needs 0 <= dst <= src < {n_sp} (spiking layers)")
        src, dst = g.layers[fb.src], g.layers[fb.dst]
        check_synapse(where, fb.kind, fb.weight, tuple(src.out_shape), tuple(dst.out_shape), fb.stride, fb.padding)
