"""The ONNX form's own error (OnnxExportError, one line) and the graph's fingerprint that the model carries in
its metadata. A graph's structure is checked by the IR itself (Graph.validate, export/ir_check.py); what no
ONNX dtype holds exactly, by export/proof/onnx_exact.py."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from saf.export.ir import Graph
from saf.core.errors import SafError


META_FINGERPRINT = "saf.graph_sha256"


class OnnxExportError(SafError, ValueError):
    """The graph cannot be exported: the message names the layer and what is wrong."""


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
