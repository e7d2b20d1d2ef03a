"""What the ONNX form accepts: structural checks of an integer Graph (export/ir.py) a user can violate, each
a one-line OnnxExportError, and the graph's fingerprint that the model carries in its metadata."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from saf.export.ir import DECAY_ONE, Graph
from saf.core.errors import SafError


META_FINGERPRINT = "saf.graph_sha256"


class OnnxExportError(SafError, ValueError):
    """The graph cannot be exported: the message names the layer and what is wrong."""


def _conv_out(n: int, k: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - k) // stride + 1


def _check_synapse(where: str, kind: str, w: np.ndarray, in_shape: tuple, out_shape: tuple,
                   stride: int, pad: int) -> None:
    if np.asarray(w).dtype.kind not in "iub":
        raise OnnxExportError(f"{where}: weights must be integers, got dtype {w.dtype}")
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if kind == "conv":
        if w.ndim != 4 or len(in_shape) != 3 or len(out_shape) != 3 or w.shape[1] != in_shape[0]:
            raise OnnxExportError(f"{where}: conv weight {w.shape} does not fit input shape {in_shape}")
        if stride < 1 or pad < 0:
            raise OnnxExportError(f"{where}: conv needs stride >= 1 and padding >= 0")
        want = (w.shape[0], _conv_out(in_shape[1], w.shape[2], stride, pad),
                _conv_out(in_shape[2], w.shape[3], stride, pad))
        if tuple(out_shape) != want:
            raise OnnxExportError(f"{where}: conv output shape {tuple(out_shape)} != computed {want}")
    elif kind in ("dense", "readout"):
        if w.shape != (n_out, n_in):
            raise OnnxExportError(f"{where}: dense weight {w.shape} should be {(n_out, n_in)}")
    else:
        raise OnnxExportError(f"{where}: unknown kind {kind!r} (expected dense, conv or readout)")


def validate_graph(graph: Graph) -> None:
    """Structural checks a user can violate; raises OnnxExportError with a one-line message."""
    if int(graph.T) < 1:
        raise OnnxExportError(f"T must be >= 1, got {graph.T}")
    if not 0 <= int(graph.decay) <= DECAY_ONE:
        raise OnnxExportError(f"decay must be in [0, {DECAY_ONE}], got {graph.decay}")
    if not graph.layers or graph.layers[-1].kind != "readout":
        raise OnnxExportError("the last layer must be the readout")
    names = [l.name for l in graph.layers]
    if len(set(names)) != len(names):
        raise OnnxExportError(f"layer names must be unique, got {names}")
    shape = tuple(graph.input_shape)
    for i, l in enumerate(graph.layers):
        where = f"layer {l.name!r}"
        if l.kind == "readout" and i != len(graph.layers) - 1:
            raise OnnxExportError(f"{where}: only the last layer may be a readout")
        if int(np.prod(l.in_shape)) != int(np.prod(shape)):
            raise OnnxExportError(f"{where}: input shape {tuple(l.in_shape)} does not match "
                                  f"the previous output {shape}")
        if int(l.in_pool) < 1 or (int(l.in_pool) > 1 and (len(l.in_shape) != 3 or l.in_shape[1] % l.in_pool
                                                           or l.in_shape[2] % l.in_pool)):
            raise OnnxExportError(f"{where}: sum pool {l.in_pool} does not divide its input {tuple(l.in_shape)}")
        _check_synapse(where, l.kind, l.weight, tuple(l.syn_in_shape), tuple(l.out_shape), l.stride, l.padding)
        nb = l.out_shape[0] if l.kind == "conv" else l.n_out
        if np.asarray(l.bias).shape != (nb,) or np.asarray(l.bias).dtype.kind not in "iub":
            raise OnnxExportError(f"{where}: bias must be {nb} integers, got {np.asarray(l.bias).shape}")
        if int(l.frac_bits) < 0:
            raise OnnxExportError(f"{where}: frac_bits must be >= 0, got {l.frac_bits}")
        shape = tuple(l.out_shape)
    n_sp = len(graph.layers) - 1
    for fb in graph.feedback:
        where = f"feedback {fb.src}->{fb.dst}"
        if not 0 <= fb.dst <= fb.src < n_sp:
            raise OnnxExportError(f"{where}: needs 0 <= dst <= src < {n_sp} (spiking layers)")
        src, dst = graph.layers[fb.src], graph.layers[fb.dst]
        _check_synapse(where, fb.kind, fb.weight, tuple(src.out_shape), tuple(dst.out_shape),
                       fb.stride, fb.padding)


def graph_fingerprint(graph: Graph) -> str:
    """sha256 of everything the model computes from, stored in the model to catch mix-ups."""
    h = hashlib.sha256()
    h.update(json.dumps([int(graph.T), int(graph.decay), list(graph.input_shape),
                         int(graph.input_bits), bool(graph.input_signed)]).encode())
    for l in graph.layers:
        h.update(json.dumps([l.name, l.kind, list(l.in_shape), list(l.out_shape), int(l.threshold),
                             int(l.stride), int(l.padding), int(l.frac_bits)]
                            + ([int(l.decay)] if l.decay else []) + ([["v0", int(l.v0)]] if l.v0 else [])
                            + ([["in_pool", int(l.in_pool)]] if int(l.in_pool) > 1 else [])
                            + ([["du", int(l.du)]] if l.two_state else [])
                            + ([["first_spike"]] if l.first_spike else [])
                            + ([["modes", l.compare, l.reset]] if l.spiking and not l.mode.is_default else [])
                            ).encode())
        h.update(np.ascontiguousarray(l.weight, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(l.bias, dtype=np.int64).tobytes())
        if l.spiking and l.has_initial_current:
            h.update(b"u0" + np.ascontiguousarray(l.u0, dtype=np.int64).tobytes())
    for fb in graph.feedback:
        h.update(json.dumps([fb.src, fb.dst, fb.kind, int(fb.stride), int(fb.padding)]).encode())
        h.update(np.ascontiguousarray(fb.weight, dtype=np.int64).tobytes())
    return h.hexdigest()
