"""Graph -> ONNX model computing the integer LIF semantics of export/ir.py bit-exactly (numpy + onnx).

Model contract (opset 17, producer "saf-toolchain"):
  input  "x":                float32 [T, N, *input_shape], the quantized input x_q[t] per step (an image repeated)
  output "readout":          int64 [N, classes], the readout integrators' R[T]
  output "spikes_<layer>":   bool [T, N, n_out] per spiking layer (only when built with spikes=True)

Time is unrolled (T is fixed in the model). Layers are grouped into blocks: a layer not spanned by a
feedback edge is one block; layers spanned by a feedback edge (dst..src) step together. A block's
first layer gets its feed-forward current for all T steps from one MatMul/Conv over the T*N stacked
inputs; inside a block the synapses run step by step. The network's input is constant over the T
steps (graph.input_time_varying False): the first block's feed-forward current is then computed
once, from x[0], and reused at every step (the model reads only x[0]; the runner repeats x_q). Synapses run in float32 or on the int64 path
as export/proof/onnx_exact.py proves exact; LIF state arithmetic is int64.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from saf.export.ir import DECAY_BITS, DECAY_ONE, DU_NONE, STATE_MAX, Graph
from saf.core.neuron_modes import RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED
from saf.export.proof.onnx_exact import check_exact, feedback_quantity, onnx_exactness, readout_sum_quantity, synapse_dtypes
from saf.export.onnx_check import META_FINGERPRINT, OnnxExportError, graph_fingerprint

OPSET = 17
IR_VERSION = 8          # onnx IR 8 pairs with opset 17 and loads in onnxruntime >= 1.10
PRODUCER = "saf-toolchain"
META_SPIKES = "saf.spikes"


def _blocks(n: int, feedback: list) -> list:
    """Consecutive spiking-layer ranges (a, z) that must be stepped together."""
    reach = list(range(n))
    for fb in feedback:
        reach[fb.dst] = max(reach[fb.dst], fb.src)
    out, a = [], 0
    while a < n:
        z, l = reach[a], a
        while l <= z:
            z, l = max(z, reach[l]), l + 1
        out.append((a, z))
        a = z + 1
    return out


class _Builder:
    """Collects nodes and initializers; every tensor gets a fresh unique name."""

    def __init__(self):
        self.nodes, self.inits, self._count, self._memo = [], [], 0, {}

    def fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def tensor(self, key, arr: np.ndarray, base: str = "c") -> str:
        """An initializer, shared across all uses with the same key."""
        if key not in self._memo:
            name = self.fresh(base)
            self.inits.append(numpy_helper.from_array(np.array(arr, order="C"), name))
            self._memo[key] = name
        return self._memo[key]

    def i64(self, value) -> str:
        arr = np.asarray(value, dtype=np.int64)
        return self.tensor(("i64", arr.shape, arr.tobytes()), arr)

    def op(self, op_type: str, inputs: list, out: str = None, **attrs) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n_{out}", **attrs))
        return out

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", [x], to=to)


@dataclass(frozen=True)
class _Conn:
    """One synapse's wiring: kind ("dense"/"conv"), integer weights, the shapes it maps, conv stride/padding."""
    kind: str
    w: np.ndarray
    in_shape: tuple
    out_shape: tuple
    stride: int = 1
    pad: int = 0


def _synapse(b: _Builder, key, x: str, conn: _Conn, dtype: str) -> str:
    """float32 x [M, n_in] -> exact int64 synaptic sums [M, n_out] (dtype: float32 or int64 path)."""
    kind, w, in_shape, out_shape, stride, pad = (conn.kind, conn.w, conn.in_shape, conn.out_shape, conn.stride,
                                                 conn.pad)
    n_out = int(np.prod(out_shape))
    if kind != "conv":
        if dtype == "float32":
            wt = b.tensor((key, "f32"), w.T.astype(np.float32), "w")
            return b.cast(b.op("MatMul", [x, wt]), TensorProto.INT64)
        wt = b.tensor((key, "i64"), w.T.astype(np.int64), "w")
        return b.op("MatMul", [b.cast(x, TensorProto.INT64), wt])
    x4 = b.op("Reshape", [x, b.i64([-1, *in_shape])])
    co, ci, kh, kw = w.shape
    if dtype == "float32":
        wf = b.tensor((key, "f32"), w.astype(np.float32), "w")
        y = b.op("Conv", [x4, wf], strides=[stride, stride], pads=[pad] * 4, kernel_shape=[kh, kw])
        return b.cast(b.op("Reshape", [y, b.i64([-1, n_out])]), TensorProto.INT64)
    # Exact integer convolution: im2col by zero Pad + strided Slice (no arithmetic), then int64 MatMul.
    ho, wo = int(out_shape[1]), int(out_shape[2])
    xp = b.cast(x4, TensorProto.INT64)
    if pad:
        xp = b.op("Pad", [xp, b.i64([0, 0, pad, pad, 0, 0, pad, pad])])
    cols = [b.op("Slice", [xp, b.i64([i, j]), b.i64([i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1]),
                           b.i64([2, 3]), b.i64([stride, stride])])
            for i in range(kh) for j in range(kw)]
    cat = b.op("Concat", cols, axis=1) if len(cols) > 1 else cols[0]     # [M, kh*kw*ci, ho, wo]
    k = kh * kw * ci
    flat = b.op("Transpose", [b.op("Reshape", [cat, b.i64([-1, k, ho * wo])])], perm=[0, 2, 1])
    w2 = b.tensor((key, "i64col"), w.transpose(2, 3, 1, 0).reshape(k, co).astype(np.int64), "w")
    y = b.op("Transpose", [b.op("MatMul", [flat, w2])], perm=[0, 2, 1])      # [M, co, ho*wo]
    return b.op("Reshape", [y, b.i64([-1, n_out])])


def _sum_pool(b: _Builder, x: str, layer) -> str:
    """float32 x [M, C*H*W] -> [M, C*(H/k)*(W/k)]: ReduceSum over each k x k block (Layer.in_pool).
    Exact in float32: the sums are integers far below 2^24 (spike counts; onnx_exact bounds them)."""
    k = int(layer.in_pool)
    if k == 1:
        return x
    c, h, w = (int(d) for d in layer.in_shape)
    x6 = b.op("Reshape", [x, b.i64([-1, c, h // k, k, w // k, k])])
    s = b.op("ReduceSum", [x6, b.i64([3, 5])], keepdims=0)
    return b.op("Reshape", [s, b.i64([-1, c * (h // k) * (w // k)])])


def _layer_synapse(b: _Builder, key, x: str, layer, kind: str, dtype: str) -> str:
    """A layer's synapse on its (sum-pooled, when Layer.in_pool > 1) input."""
    conn = _Conn(kind, layer.weight, tuple(layer.syn_in_shape), tuple(layer.out_shape), layer.stride, layer.padding)
    return _synapse(b, key, _sum_pool(b, x, layer), conn, dtype)


def _decay(b: _Builder, v: str, m: int) -> str:
    """sign(v) * ((|v| * m) >> 12), with >> 12 as Div of a non-negative int64 by 4096."""
    if m == DECAY_ONE:
        return v
    mag = b.op("Div", [b.op("Mul", [b.op("Abs", [v]), b.i64(m)]), b.i64(1 << DECAY_BITS)])
    return b.op("Mul", [mag, b.op("Sign", [v])])


# _lif_step builds each layer's own comparison and reset (onnx_exact.MODES declares all of them).
_COMPARE_OP = {">=": "GreaterOrEqual", ">": "Greater"}


def _current_step(b: _Builder, cur: str, bias: str, uprev, layer) -> tuple:
    """A two-state layer's current register (export/ir.py): U = trunc0(U * (4095-du)/4096) +
    ((I - B) << F), I = W s_in + B (+ feedback), U[0] = u0 (an initializer, Layer.u0) or 0.
    Returns (U, U + (B << F)), what V receives."""
    f = int(layer.frac_bits)
    full = layer.full_bias()
    zero = not full.any()                      # no bias (FP): I is the synaptic sum, V receives U
    syn = cur if zero else b.op("Sub", [cur, bias])
    u = b.op("Mul", [syn, b.i64(1 << f)]) if f else syn
    if uprev is None and layer.has_initial_current:     # step 1 decays U[0] = u0
        uprev = b.tensor(("u0", layer.name), layer.full_initial_current(), "u0")
    if uprev is not None:
        u = b.op("Add", [_decay(b, uprev, DU_NONE - int(layer.du)), u])
    return u, u if zero else b.op("Add", [u, b.tensor(("bias_shifted", layer.name), full << f, "b")])


def _lif_step(b: _Builder, cur: str, vprev, layer, m: int, shifted: str = None):
    """One step of one layer: int64 current I [N, n] -> (spikes bool, state after reset);
    `shifted` (a two-state layer's U + (B << F)) replaces I << F when given. For a subtract-undecayed
    layer the state is (V, owed): V' = V and the TH<<F its spike owes, subtracted after the next decay."""
    f = int(layer.frac_bits)
    if shifted is None:
        shifted = b.op("Mul", [cur, b.i64(1 << f)]) if f else cur
    if vprev is None and int(layer.v0):             # V'[0] = v0 (initial potential), decayed at step 1
        vprev = b.i64(int(layer.v0))
    owed = None
    if isinstance(vprev, tuple):
        vprev, owed = vprev
    v = shifted if vprev is None else b.op("Add", [_decay(b, vprev, m), shifted])
    if owed is not None:
        v = b.op("Sub", [v, owed])
    v = b.op("Clip", [v, b.i64(-STATE_MAX), b.i64(STATE_MAX)])
    th = b.i64(int(layer.threshold) << f)
    s = b.op(_COMPARE_OP[layer.compare], [v, th])
    if layer.reset == RESET_SUBTRACT_UNDECAYED:
        return s, (v, b.op("Where", [s, th, b.i64(0)]))
    after = b.op("Sub", [v, th]) if layer.reset == RESET_SUBTRACT else b.i64(0)
    return s, b.op("Where", [s, after, v])


def _readout(b: _Builder, graph: Graph, stack: str, dtype: str) -> None:
    """Output "readout" from the last spiking layer's float32 spikes stack [T, N, n_in]."""
    ro, T = graph.readout, int(graph.T)
    if ro.first_spike:                 # R = T + 1 - first step (1-based) with W s[t] + B > 0, else 0
        flat = b.op("Reshape", [stack, b.i64([-1, ro.n_in])])
        conn = _Conn("dense", ro.weight, tuple(ro.in_shape), tuple(ro.out_shape))
        drive = b.op("Reshape", [_synapse(b, ("ro",), flat, conn, dtype), b.i64([T, -1, ro.n_out])])
        drive = b.op("Add", [drive, b.tensor(("bias", "ro"), np.asarray(ro.bias, dtype=np.int64), "b")])
        on = b.cast(b.op("Greater", [drive, b.i64(0)]), TensorProto.INT32)          # [T, N, n]
        first = b.op("ArgMax", [on], axis=0, keepdims=0, select_last_index=0)         # first step, 0-based
        anyon = b.op("Greater", [b.op("ReduceMax", [on], axes=[0], keepdims=0), b.tensor(("i32", 0),
                                                                                         np.int32(0))])
        b.op("Where", [anyon, b.op("Sub", [b.i64(T), first]), b.i64(0)], out="readout")
        return
    if not ro.decay:                   # R[T] = W (sum_t s[t]) + T B
        count = b.op("ReduceSum", [stack, b.i64([0])], keepdims=0)       # [N, n_in]: spikes per input
        rsum = _layer_synapse(b, ("ro",), count, ro, "dense", dtype)
        b.op("Add", [rsum, b.tensor(("bias", "ro"), T * np.asarray(ro.bias, dtype=np.int64), "b")], out="readout")
        return
    # leaking: R[t] = decay_r(R[t-1]) + ((W s[t] + B) << F_r), one synapse over the T*N stacked spikes
    flat = b.op("Reshape", [stack, b.i64([-1, ro.n_in])])
    cur = b.op("Reshape", [_layer_synapse(b, ("ro",), flat, ro, "dense", dtype), b.i64([T, -1, ro.n_out])])
    cur = b.op("Mul", [b.op("Add", [cur, b.tensor(("bias", "ro"), np.asarray(ro.bias, dtype=np.int64), "b")]),
                       b.i64(1 << ro.readout_shift)])
    r = None
    for t in range(T):
        step = b.op("Gather", [cur, b.i64(t)], axis=0)
        r = step if r is None else b.op("Add", [_decay(b, r, DECAY_ONE - int(ro.decay)), step])
    b.op("Identity", [r], out="readout")


def build_onnx_model(graph: Graph, spikes: bool = True) -> onnx.ModelProto:
    """The ONNX model of `graph` (contract in the module docstring). Raises IRError (export/ir.py) for a
    malformed graph and OnnxExactnessError when some intermediate cannot be held exactly."""
    graph.validate()
    items = onnx_exactness(graph)
    check_exact(items)
    dtypes = synapse_dtypes(items)
    b, T = _Builder(), int(graph.T)
    spiking, m = graph.spiking_layers, DECAY_ONE - int(graph.decay)
    outputs = []
    # Input as a float32 stack [T, N, n_in] (flat features); every later stack is a block's spikes.
    stack = b.op("Reshape", ["x", b.i64([T, -1, int(np.prod(graph.input_shape))])])
    spk_f = {}                                          # (layer, t) -> float32 spikes [N, n]

    def spikes_f(l: int, t: int, s_bool: dict) -> str:
        if (l, t) not in spk_f:
            spk_f[(l, t)] = b.cast(s_bool[(l, t)], TensorProto.FLOAT)
        return spk_f[(l, t)]

    def syn(l: int, x: str) -> str:
        layer = spiking[l]
        return _layer_synapse(b, ("ff", l), x, layer, layer.kind, dtypes[(layer.name, "synaptic sum")])

    constant_input = not getattr(graph, "input_time_varying", False)
    for a, z in _blocks(len(spiking), graph.feedback):
        head = spiking[a]
        if a == 0 and constant_input:                  # one current [N, n_out], the same at every step
            x0 = b.op("Gather", [stack, b.i64(0)], axis=0)
            cur0 = b.op("Add", [syn(a, x0), b.tensor(("bias", a), head.full_bias(), "b")])
        else:
            flat = b.op("Reshape", [stack, b.i64([-1, head.n_in])])
            cur_all = b.op("Reshape", [syn(a, flat), b.i64([T, -1, head.n_out])])
            cur_all = b.op("Add", [cur_all, b.tensor(("bias", a), head.full_bias(), "b")])
            cur0 = None
        s_bool, state = {}, {l: None for l in range(a, z + 1)}
        ustate = {l: None for l in range(a, z + 1)}          # two-state layers' current registers
        for t in range(T):
            for l in range(a, z + 1):
                layer = spiking[l]
                if l == a:
                    cur = cur0 if cur0 is not None else b.op("Gather", [cur_all, b.i64(t)], axis=0)
                else:
                    cur = b.op("Add", [syn(l, spikes_f(l - 1, t, s_bool)),
                                       b.tensor(("bias", l), layer.full_bias(), "b")])
                for k, fb in enumerate(graph.feedback):
                    if fb.dst == l and t > 0:
                        cur = b.op("Add", [cur, _feedback(b, graph, k, spikes_f(fb.src, t - 1, s_bool), dtypes)])
                shifted = None
                if layer.two_state:
                    ustate[l], shifted = _current_step(b, cur, b.tensor(("bias", l), layer.full_bias(), "b"),
                                                       ustate[l], layer)
                s_bool[(l, t)], state[l] = _lif_step(b, cur, state[l], layer, m, shifted)
        for l in range(a, z + 1):
            layer = spiking[l]
            steps = [b.op("Unsqueeze", [s_bool[(l, t)], b.i64([0])]) for t in range(T)]
            name = f"spikes_{layer.name}" if spikes else None
            out = b.op("Concat", steps, out=name, axis=0) if T > 1 else b.op("Identity", steps, out=name)
            if spikes:
                outputs.append(helper.make_tensor_value_info(name, TensorProto.BOOL, [T, "N", layer.n_out]))
            stack = out
        stack = b.cast(stack, TensorProto.FLOAT)
    _readout(b, graph, stack, dtypes[(graph.readout.name, readout_sum_quantity(graph))])
    return _model(b, graph, outputs, dtypes, spikes)


def _feedback(b: _Builder, graph: Graph, k: int, x: str, dtypes: dict) -> str:
    """Feedback edge k's synaptic sums from its source's previous-step float32 spikes x."""
    fb, spiking = graph.feedback[k], graph.spiking_layers
    dst = spiking[fb.dst]
    conn = _Conn(fb.kind, fb.weight, tuple(spiking[fb.src].out_shape), tuple(dst.out_shape), fb.stride, fb.padding)
    return _synapse(b, ("fb", k), x, conn, dtypes[(dst.name, feedback_quantity(graph, k))])


def _model(b: _Builder, graph: Graph, outputs: list, dtypes: dict, spikes: bool) -> onnx.ModelProto:
    """The built nodes as an ONNX model: inputs/outputs, opset, producer and the saf metadata."""
    ro, T = graph.readout, int(graph.T)
    outputs.insert(0, helper.make_tensor_value_info("readout", TensorProto.INT64, ["N", ro.n_out]))
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, "N", *graph.input_shape])
    g = helper.make_graph(b.nodes, "saf_integer_lif", [x_info], outputs, b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER,
                              producer_version=_version(),
                              doc_string="Integer LIF network (saf-toolchain); semantics: export/ir.py")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {META_FINGERPRINT: graph_fingerprint(graph),
                                   META_SPIKES: "1" if spikes else "0", "saf.T": str(T),
                                   "saf.synapse_dtypes": json.dumps({f"{k[0]}: {k[1]}": v
                                                                     for k, v in dtypes.items()})})
    return model


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("saf-toolchain")
    except Exception:               # not installed (running from a source tree)
        return "0"


def save_onnx_model(graph: Graph, path, spikes: bool = True) -> None:
    """Build and write the model atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OnnxExportError(f"cannot write {path}: folder {path.parent} does not exist")
    data = build_onnx_model(graph, spikes=spikes).SerializeToString()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
