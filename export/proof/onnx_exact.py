"""Exactness proof for the ONNX form of a Graph: every intermediate stays in its dtype's exact range.

The ONNX model (export/onnx_model.py) computes the integer LIF semantics of export/ir.py with two
kinds of arithmetic:

* Synaptic sums (MatMul / Conv) in float32. Every operand is an integer; IEEE float32 represents
  every integer of magnitude <= 2^24 exactly, so a product or a sum of such integers is exact when
  its true value has magnitude <= 2^24. Every partial sum of sum_i w_i x_i (in any order, blocked,
  with or without FMA) is a sum over a subset of the terms, so its magnitude is at most
  sum_i |w_i| |x_i| <= sum_i |w_i| * xmax. If that bound is <= 2^24 for every output neuron, the
  float32 result is the exact integer. (This assumes a summation-based kernel, as the onnxruntime
  CPU provider uses: no Winograd/FFT convolution and no reduced-precision TF32 math.)
  When the bound exceeds 2^24 the synapse is computed on the exact integer path instead: int64
  MatMul (a convolution becomes Pad + strided Slice im2col, which moves values without arithmetic,
  followed by an int64 MatMul). Its limit is 2^63 - 1.
* The LIF state (current << F, decay product, clip, compare, subtractive reset) and the readout
  accumulation in int64, limit 2^63 - 1. The decay uses Abs, an int64 Mul, an int64 Div by 4096
  of a non-negative value (truncation equals floor, i.e. >> 12) and Sign, so only the rounding of
  integer division for non-negative operands is relied on.

onnx_exactness(graph) returns one ExactnessItem per (layer, quantity) with its worst-case magnitude
(one "feedback sum k" item per feedback edge k). The builder takes each synapse's dtype from its
sum item (synaptic, feedback, readout: synapse_dtypes) and refuses a graph with any item not ok.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saf.export.ir import DECAY_ONE, STATE_MAX, Graph
from saf.core.neuron_modes import ALL_MODES, RESET_SUBTRACT_UNDECAYED
from saf.core.errors import SafError

# What the ONNX model computes at a tie and on a spike (onnx_model._lif_step builds each layer's own compare
# and reset, every combination); declared here, without importing onnx, for the certificate's convention row
# and the backend records.
MODES = frozenset(ALL_MODES)

FLOAT32_EXACT = 1 << 24
INT64_MAX = (1 << 63) - 1


class OnnxExactnessError(SafError, ValueError):
    """The ONNX model cannot compute this graph exactly; the message names the layer and quantity."""


@dataclass(frozen=True)
class ExactnessItem:
    layer: str        # layer name, or "input"
    quantity: str     # what is bounded, e.g. "synaptic sum", "decay product"
    bound: int        # worst-case magnitude over all neurons, steps and admissible inputs
    limit: int        # largest magnitude the dtype holds exactly
    ok: bool
    dtype: str        # "float32" | "int64"
    reason: str = ""  # one line: why it fails, or why the exact integer path was chosen

    def __str__(self) -> str:
        mark = "ok " if self.ok else "FAIL"
        line = f"[{mark}] {self.layer}: {self.quantity} <= {self.bound} (limit {self.limit}, {self.dtype})"
        return line + (f" -- {self.reason}" if self.reason else "")


def abs_row_sum_max(weight: np.ndarray) -> int:
    """max over output neurons (first axis) of sum |w|, as an exact Python int."""
    w = _integers(weight)
    if w.size == 0:
        return 0
    rows = w.reshape(w.shape[0], -1)
    wmax = int(np.abs(rows).max())
    if wmax * rows.shape[1] < (1 << 62):
        return int(np.abs(rows.astype(np.int64)).sum(axis=1).max())
    return max(sum(abs(int(v)) for v in r) for r in rows)


def abs_max(a: np.ndarray) -> int:
    a = _integers(a)
    return max(abs(int(a.max())), abs(int(a.min()))) if a.size else 0


def _integers(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise OnnxExactnessError(f"weights and biases must be integer arrays, got dtype {a.dtype}")
    return a


def _synapse_item(layer: str, quantity: str, bound: int) -> ExactnessItem:
    """float32 when the bound fits 2^24, else the int64 path (or a failure past 2^63 - 1)."""
    if bound <= FLOAT32_EXACT:
        return ExactnessItem(layer, quantity, bound, FLOAT32_EXACT, True, "float32")
    ok = bound <= INT64_MAX
    why = (f"bound {bound} > 2^24 would round in float32; computed on the exact int64 path" if ok else
           f"bound {bound} exceeds int64 (2^63-1): no exact ONNX arithmetic for this synapse")
    return ExactnessItem(layer, quantity, bound, INT64_MAX, ok, "int64", why)


def _pool_item(layer: str, bound: int) -> ExactnessItem:
    """A sum pool's ReduceSum in float32: exact while every partial sum of its inputs is <= 2^24."""
    ok = bound <= FLOAT32_EXACT
    return ExactnessItem(layer, "sum pool in float32", bound, FLOAT32_EXACT, ok, "float32",
                         "" if ok else f"pooled inputs up to {bound} > 2^24 would round in float32")


def _int_item(layer: str, quantity: str, bound: int) -> ExactnessItem:
    ok = bound <= INT64_MAX
    why = "" if ok else f"{quantity} can reach {bound}, beyond int64 (2^63-1)"
    return ExactnessItem(layer, quantity, bound, INT64_MAX, ok, "int64", why)


def feedback_quantity(graph: Graph, k: int) -> str:
    """The item name of feedback edge k's sum (one item per edge, even for parallel edges)."""
    return f"feedback sum {k} from {graph.layers[graph.feedback[k].src].name}"


def onnx_exactness(graph: Graph) -> list:
    """Per layer, the worst-case magnitude of every intermediate of the ONNX model, against the
    exact range of the dtype that holds it. Returns list[ExactnessItem] in computation order."""
    items = []
    xmax = graph.input_max
    ok = xmax <= FLOAT32_EXACT
    items.append(ExactnessItem("input", "x_q in float32", xmax, FLOAT32_EXACT, ok, "float32",
                               "" if ok else f"input_bits={graph.input_bits} admits |x_q| = {xmax} > 2^24, "
                                             "which float32 cannot hold exactly"))
    spiking = graph.spiking_layers
    m = DECAY_ONE - int(graph.decay)
    xin = xmax
    for li, layer in enumerate(spiking):
        if int(layer.in_pool) > 1:                 # ReduceSum of k x k float32 inputs (Layer.in_pool)
            items.append(_pool_item(layer.name, xin * layer.pool_gain))
        syn = max(abs_row_sum_max(layer.weight) * xin * layer.pool_gain, abs_max(layer.weight))
        items.append(_synapse_item(layer.name, "synaptic sum", syn))
        current = syn + abs_max(layer.bias)
        for k, fb in enumerate(graph.feedback):
            if fb.dst != li:
                continue
            fbb = max(abs_row_sum_max(fb.weight), abs_max(fb.weight))
            items.append(_synapse_item(layer.name, feedback_quantity(graph, k), fbb))
            current += fbb
        shifted = current << int(layer.frac_bits)
        items.append(_int_item(layer.name, "current I << F", shifted))
        th_f = abs(int(layer.threshold) << int(layer.frac_bits))
        reset = STATE_MAX + th_f
        items.append(_int_item(layer.name, "reset V - TH<<F", reset))
        # |V'| <= STATE_MAX unless a negative threshold lifts a firing state above it.
        vprime = STATE_MAX + (th_f if layer.threshold < 0 else 0)
        if m != DECAY_ONE:
            items.append(_int_item(layer.name, "decay product |V'|*(4096-D)", vprime * abs(m)))
        owed = th_f if layer.reset == RESET_SUBTRACT_UNDECAYED else 0   # subtracted after the decay
        items.append(_int_item(layer.name, "state before clip", vprime + shifted + owed))
        xin = 1
    ro = graph.readout
    T = int(graph.T)
    if int(ro.in_pool) > 1:
        items.append(_pool_item(ro.name, (xin if ro.decay else T * xin) * ro.pool_gain))
    xin = xin * ro.pool_gain            # the readout reads sum-pooled spikes (counts up to k^2)
    if not ro.decay:
        count = T * xin                 # sum over T steps of the readout's input
        syn = max(abs_row_sum_max(ro.weight) * count, abs_max(ro.weight), count)
        items.append(_synapse_item(ro.name, readout_sum_quantity(graph), syn))
        items.append(_int_item(ro.name, "readout R[T]", syn + T * abs_max(ro.bias)))
        return items
    # leaking readout, stepped: R = decay_r(R) + ((W s + B) << F_r), |R| <= T |(W s + B) << F_r|
    syn = max(abs_row_sum_max(ro.weight) * xin, abs_max(ro.weight), xin)
    items.append(_synapse_item(ro.name, readout_sum_quantity(graph), syn))
    r = T * ((syn + abs_max(ro.bias)) << ro.readout_shift)
    items.append(_int_item(ro.name, "readout R[T]", r))
    items.append(_int_item(ro.name, "decay product |R|*(4096-D)", r * (DECAY_ONE - int(ro.decay))))
    return items


def readout_sum_quantity(graph: Graph) -> str:
    """The item name of the readout's synaptic sum (over T steps, or per step when it leaks)."""
    return "synaptic sum per step" if graph.readout.decay else "synaptic sum over T steps"


def check_exact(items: list) -> None:
    """Raise OnnxExactnessError (one line, naming the layer) if any item is not ok."""
    bad = [it for it in items if not it.ok]
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise OnnxExactnessError(f"ONNX export refused: layer {first.layer!r}: {first.reason}{more}")


def synapse_dtypes(items: list) -> dict:
    """{(layer name, quantity): dtype} for the synaptic items, as the builder consumes them."""
    return {(it.layer, it.quantity): it.dtype for it in items if "sum" in it.quantity}
