"""Fast bit-accurate emulator of the integer LIF form (export/ir.py's docstring is the spec).

Numpy only, batched over samples. Synapses are exact integer sums computed with BLAS: a layer's
weights and inputs are integers, so a float32 (float64) matmul is exact whenever every partial sum
stays below 2^24 (2^53) in magnitude; `_Synapse` bounds max_row(sum |w|) * max|input| and picks
float32, float64 or (beyond 2^53) int64 accordingly. A small convolution whose kernel covers much of
its input is unrolled once into a dense matrix; any other gathers its receptive fields with one
precomputed index (im2col) and does one matmul per step. What is constant is computed once per
batch: the first layer's current W x_q + B and its shifted u (the input is constant over the T
steps). A sum-pooled layer (Layer.in_pool = k) sums its input over k x k blocks first (integer
counts; its synapse's exact-dtype bound is k^2 times larger). The neuron state runs in float64 holding exact integers while the plan's state bound allows
(EmulatorPlan.state_dtype; every operation, the truncating decay included, is then exact), else in int64.

Every spiking layer runs its own compare and reset (Layer.compare, Layer.reset; export/ir.py).
`emulate` takes fault-injection options so the verifier's tests can show each fault is caught:
  tie="gt" / "ge"      fire on V > TH<<F (Lava's strict comparison, unconverted) / V >= TH<<F on every
                       layer, whatever the layer says; tie="flip": each layer's compare swapped (>= <-> >)
  reset="zero"         hard reset (V' = 0 on a spike) on every layer ("subtract", "subtract-undecayed"
                       likewise); reset="swap": each layer's reset replaced (RESET_SWAP)
  feedforward_delay=d  every feedforward connection (input, layer to layer, readout) delayed d steps
                       (d = 1: Lava's per-connection delay left uncompensated)
  feedback_delay=d     delay of feedback edges (correct: 1; 2 = one step too many)
  overflow="wrap"      24-bit wrap-around instead of saturation
  current_bits=b       the current I << F held in a b-bit register that wraps (Loihi's u register is
                       24 bits and the certificate keeps it from wrapping; b = 21: a too-narrow one)
  readout_leak=False   the readout's leak ignored (a plain sum where the trained readout leaks)
  current_decay=False  a two-state layer's current register not carried (du ignored: U = W s << F)
  initial_current=False  a two-state layer's current register started at U[0] = 0, ignoring Layer.u0
  first_spike=False    a first-spike readout computed as the plain sum (spike counts) instead
  readout_delay=d      the readout reads the last spiking layer's spikes d steps late (d = 1: the readout's own
                       Lava delay left uncompensated: the last step's output spikes are never counted)
The defaults are the correct semantics (MODES: every layer's own compare and reset, any of them).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from saf.export.ir import DECAY_ONE, STATE_BITS, STATE_MAX, Graph
from saf.core.neuron_modes import (ALL_MODES, COMPARE_GE, COMPARE_GT, RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED,
                                    RESET_ZERO)

from saf.export.result import BackendResult
from saf.deploy.backends.emulator_kernels import decay_trunc as _decay
from saf.deploy.backends.emulator_options import EmulatorOptions

# What emulate() computes with its default options (declared for the certificate's convention row): each
# layer's own compare and reset, every combination of them.
MODES = frozenset(ALL_MODES)
# reset="swap" (a fault): the reset each layer runs instead of its own
RESET_SWAP = {RESET_SUBTRACT: RESET_ZERO, RESET_ZERO: RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED: RESET_SUBTRACT}
# Convolutions with n_in * n_out up to this many entries are unrolled into a dense matrix.
DENSE_CONV_LIMIT = 1 << 22
# The neuron state runs in float64 (fewer, cheaper passes than int64; every value an integer, so
# exact) while every state bound of the plan stays below this; beyond it, int64.
FLOAT_STATE_LIMIT = 1 << 40
# ... and only when n_in <= this many times the kernel's fan-in C_in*kh*kw (the unrolled matrix then
# does at most this many times the multiply-adds of the convolution itself).
UNROLL_WASTE = 4


def _conv_im2col(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation of a batch x [B, C, H, W] with w [Co, C, kh, kw] -> [B, Co, Ho, Wo]."""
    co, c, kh, kw = w.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # B C Ho Wo kh kw
    b, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw)
    out = cols @ w.reshape(co, -1).T                                                # B*Ho*Wo, Co
    return out.reshape(b, ho, wo, co).transpose(0, 3, 1, 2)


def _gather_index(in_shape: tuple, out_shape: tuple, wshape: tuple, stride: int, pad: int) -> np.ndarray:
    """Flat indices [Ho*Wo*C*kh*kw] into a flattened input [C*H*W] (+ one appended zero at index
    C*H*W for taps in the padding): row (oy, ox) of the im2col matrix, columns ordered (c, ky, kx)
    like w.reshape(Co, -1)."""
    c, h, w = in_shape
    _, ho, wo = out_shape
    _, _, kh, kw = wshape
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    cc, ky, kx = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    iy = oy.reshape(-1, 1) * stride - pad + ky.reshape(1, -1)
    ix = ox.reshape(-1, 1) * stride - pad + kx.reshape(1, -1)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    flat = cc.reshape(1, -1) * (h * w) + np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)
    return np.where(ok, flat, c * h * w).reshape(-1).astype(np.intp)


def _exact_dtype(bound: int):
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    if bound < (1 << 62):
        return np.int64
    raise OverflowError(f"synaptic sum bound {bound} does not fit in int64")


class _Synapse:
    """y = W x for a batch of flattened inputs x [B, n_in] -> [B, n_out], exact in integers."""

    def __init__(self, kind: str, weight: np.ndarray, in_shape: tuple, out_shape: tuple,
                 stride: int, padding: int, in_max: int, name: str):
        self.kind, self.in_shape, self.out_shape = kind, tuple(in_shape), tuple(out_shape)
        self.stride, self.padding, self.name = stride, padding, name
        w = np.asarray(weight, dtype=np.int64)
        rows = np.abs(w.reshape(w.shape[0], -1)).sum(1)
        self.bound = int(rows.max(initial=0)) * int(in_max)
        self.dtype = _exact_dtype(self.bound)
        n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
        self.mat = None
        # a conv is unrolled into a dense matrix only where that matrix is not mostly zeros (its
        # kernel covers much of its input); else the gathered im2col does ~n_in / fan-in less work
        dense_enough = n_in <= UNROLL_WASTE * int(np.prod(w.shape[1:]))
        if kind == "conv" and n_in * max(n_in, n_out) <= DENSE_CONV_LIMIT and dense_enough:
            eye = np.eye(n_in, dtype=np.int64).reshape(n_in, *in_shape)
            self.mat = _conv_im2col(eye, w, stride, padding).reshape(n_in, n_out).astype(self.dtype)
        elif kind == "conv":
            self.idx = _gather_index(in_shape, out_shape, w.shape, stride, padding)
            self.wmat = w.reshape(w.shape[0], -1).T.astype(self.dtype)               # C*kh*kw, Co
        else:
            self.mat = w.T.astype(self.dtype)                                          # n_in, n_out

    def __call__(self, x: np.ndarray, out_dtype=np.int64) -> np.ndarray:
        if self.mat is not None:
            y = x.astype(self.dtype, copy=False) @ self.mat
        else:                     # gather the receptive fields (a padding tap reads the appended 0)
            b, co = x.shape[0], self.wmat.shape[1]
            xe = np.zeros((b, x.shape[1] + 1), dtype=self.dtype)         # cast before the gather: the
            xe[:, :-1] = x                                                # gathered matrix is ~fan-in/4 larger
            cols = xe.take(self.idx, axis=1).reshape(-1, self.wmat.shape[0])
            y = (cols @ self.wmat).reshape(b, -1, co).transpose(0, 2, 1).reshape(b, -1)
        # exact: every partial sum is an integer below 2^24 / 2^53 (int64 beyond)
        return y.astype(out_dtype, copy=False)


class _Pooled:
    """A layer's k x k integer sum pool (Layer.in_pool) followed by its _Synapse on the pooled map."""

    def __init__(self, layer, syn: _Synapse):
        self.layer, self.syn = layer, syn
        self.bound, self.dtype, self.name = syn.bound, syn.dtype, syn.name

    def __call__(self, x: np.ndarray, out_dtype=np.int64) -> np.ndarray:
        return self.syn(self.layer.pool_input(x), out_dtype)


def _layer_synapse(layer, in_max: int) -> _Synapse:
    """The synapse of an IR layer; a sum-pooled layer reads counts up to k^2 * in_max."""
    syn = _Synapse(layer.kind if layer.kind != "readout" else "dense", layer.weight, layer.syn_in_shape,
                   layer.out_shape, layer.stride, layer.padding, int(in_max) * layer.pool_gain, layer.name)
    return _Pooled(layer, syn) if int(layer.in_pool) > 1 else syn


def _wrap(v: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    if v.dtype == np.float64:                   # exact integer arithmetic in float64 (|v| < 2^53)
        return np.mod(v + half, float(1 << bits)) - half
    return ((v + half) & ((1 << bits) - 1)) - half


def _shift(x: np.ndarray, bits: int) -> np.ndarray:
    """x << bits for int64, x * 2^bits (exact) for float64."""
    return x * float(1 << bits) if x.dtype == np.float64 else x << bits


def _limit(v: np.ndarray, overflow: str) -> tuple:
    """Apply the 24-bit state limit; returns (limited state, number of elements changed, max |v|)."""
    lo, hi = (v.min(), v.max()) if v.size else (0, 0)
    if -STATE_MAX <= lo and hi <= STATE_MAX:
        return v, 0, int(max(hi, -lo))
    if overflow == "clip":
        out = np.clip(v, -STATE_MAX, STATE_MAX)
    elif overflow == "wrap":
        out = _wrap(v, STATE_BITS)
    else:
        raise ValueError(f"overflow must be 'clip' or 'wrap', got {overflow!r}")
    return out, int(np.count_nonzero(out != v)), int(np.abs(out).max(initial=0))


class EmulatorPlan:
    """Per-graph precomputation: synapses with exact dtypes, full biases, feedback wiring."""

    def __init__(self, graph: Graph, x_max: int = 0):
        self.spiking = graph.spiking_layers
        n_sp = len(self.spiking)
        if any(not l.spiking for l in graph.layers[:-1]) or graph.layers[-1].spiking:
            raise ValueError("graph must list its spiking layers first and end with the readout")
        x_max = max(int(x_max), graph.input_max)
        self.x_max = x_max                      # the exact-dtype choice assumes |x_q| <= x_max
        self.syn, self.bias = [], []
        for i, layer in enumerate(graph.layers):
            self.syn.append(_layer_synapse(layer, x_max if i == 0 else (graph.T if not layer.spiking else 1)))
            self.bias.append(layer.full_bias())
        self.fb = [[] for _ in range(n_sp)]
        for f in graph.feedback:
            if not (0 <= f.dst <= f.src < n_sp):
                raise ValueError(f"feedback {f.src}->{f.dst} must join spiking layers with dst <= src")
            src, dst = self.spiking[f.src], self.spiking[f.dst]
            syn = _Synapse(f.kind, f.weight, src.out_shape, dst.out_shape, f.stride, f.padding, 1,
                           f"feedback {f.src}->{f.dst}")
            self.fb[f.dst].append((f.src, syn))
        # state dtype: float64 while every |V| (and |V| * 4096 in the decay) stays exact, else int64
        worst = 0
        for li, layer in enumerate(self.spiking):
            cur = self.syn[li].bound + int(np.abs(self.bias[li]).max(initial=0)) + \
                sum(syn.bound for _, syn in self.fb[li])
            if layer.two_state:     # the carried U: at most 4096 / (du + 1) times one step's current
                cur = cur * -(-DECAY_ONE // (int(layer.du) + 1))
            u0 = int(np.abs(layer.full_initial_current()).max(initial=0))                  # |U[0]|
            worst = max(worst, (cur << layer.frac_bits) + 2 * u0 + (int(layer.threshold) << layer.frac_bits))
        float_syn = all(np.dtype(sy.dtype).kind == "f" for sy in self.syn[:n_sp]) and \
            all(np.dtype(sy.dtype).kind == "f" for fb in self.fb for _, sy in fb)
        self.state_dtype = np.float64 if float_syn and worst + 2 * STATE_MAX < FLOAT_STATE_LIMIT else np.int64


# emulate()'s fault-injection options at their correct values

def _compare(layer, tie) -> str:
    """The compare layer runs under the tie option (None: its own)."""
    if tie is None:
        return layer.compare
    if tie == "flip":
        return COMPARE_GT if layer.compare == COMPARE_GE else COMPARE_GE
    return COMPARE_GT if tie == "gt" else COMPARE_GE


def _reset(layer, reset) -> str:
    """The reset layer runs under the reset option (None: its own)."""
    if reset is None:
        return layer.reset
    return RESET_SWAP[layer.reset] if reset == "swap" else reset


def emulate(graph: Graph, xq: np.ndarray, options: Optional[EmulatorOptions] = None, plan: EmulatorPlan = None,
            **kw) -> BackendResult:
    """Run the integer LIF form on xq [N, *input_shape] (constant) or [N, T, *input_shape] (frame x[t]
    at step t). options: an EmulatorOptions record or its fields as keywords; the fault fields inject
    faults. A feed-forward graph with no fault runs layer by layer (emulator_layers.py) unless
    layer_schedule=False (the step-by-step schedule of _StepMajor)."""
    import saf.deploy.backends.emulator_layers as emulator_layers
    o = replace(options, **kw) if options is not None else EmulatorOptions(**kw)
    t0 = time.perf_counter()
    frames = graph.input_frames(xq)                         # [N, T, n_in]: constant or x[t]
    varying = np.asarray(xq).ndim == len(graph.input_shape) + 2
    n = frames.shape[0]
    x_abs = int(np.abs(frames if varying else frames[:, 0]).max(initial=0))
    if plan is None or x_abs > plan.x_max:      # inputs beyond input_bits: re-derive exact dtypes
        plan = EmulatorPlan(graph, x_abs)
    T, sp = graph.T, plan.spiking
    out = {"readout": np.zeros((n, graph.readout.n_out), dtype=np.int64),
           "spikes": [np.zeros((n, T, l.n_out), dtype=bool) for l in sp] if o.record_spikes else None,
           "potentials": [np.zeros((n, T, l.n_out), dtype=np.int64) for l in sp] if o.record_potentials else None,
           "sat": {l.name: 0 for l in sp}, "vmax": {l.name: 0 for l in sp}, "macs": 0}
    layer_major = o.layer_schedule and emulator_layers.supports(graph, o.injected(), plan)
    for start in range(0, n, o.batch_size):
        sl = slice(start, min(n, start + o.batch_size))
        if layer_major:       # feed-forward, correct semantics: one matmul per layer for all T steps
            emulator_layers.emulate_layers(graph, frames, varying, plan, sl=sl, out=out)
        else:
            _StepMajor(graph, plan, o, frames[sl], varying).run(sl, out)
        if o.progress:
            print(f"emulator: {sl.stop}/{n} samples", flush=True)
    info = {"saturated": out["sat"], "max_abs_v": out["vmax"], "faults": o.faults(),
            "schedule": "layer-major" if layer_major else "step-major",
            "macs_executed": out["macs"] if layer_major else None,     # counted by the event-driven kernels
            "synapse_dtypes": {s.name: np.dtype(s.dtype).name for s in plan.syn},
            "state_dtype": np.dtype(plan.state_dtype).name}
    return BackendResult(backend="emulator", readout=out["readout"], spikes=out["spikes"],
                         potentials=out["potentials"], seconds=time.perf_counter() - t0, info=info)


class _StepMajor:
    """One batch of samples run step by step, every layer at each step (feedback edges, delays and the
    fault options need it): V, the carried currents U and the spike history between steps."""

    def __init__(self, graph: Graph, plan: EmulatorPlan, o: EmulatorOptions, frames: np.ndarray, varying: bool):
        self.g, self.plan, self.o, self.varying = graph, plan, o, varying
        sp, sdt, T = plan.spiking, plan.state_dtype, graph.T
        b = frames.shape[0]
        # a constant input's current (with the bias) is computed once; a train x[t] gets one per step
        if varying:
            self.I0 = [plan.syn[0](frames[:, t], sdt) + plan.bias[0].astype(sdt) for t in range(T)]
        else:
            self.I0 = plan.syn[0](frames[:, 0], sdt) + plan.bias[0].astype(sdt)
        if not plan.fb[0]:                                      # ... and so is the whole u of layer 0
            self.u0 = [self._u(i) for i in self.I0] if varying else self._u(self.I0)
        # V'[0] = v0 (Layer.v0, DSR's alpha firing); initial_potential=False injects the fault of ignoring it
        self.V = [np.full((b, l.n_out), int(l.v0) if o.initial_potential else 0, dtype=sdt) for l in sp]
        zeros = [np.zeros((b, l.n_out), dtype=bool) for l in sp]
        # hist[t'] = list of spike arrays of step t' (most recent last), enough for both delays
        depth = max(o.feedforward_delay + o.readout_delay, o.feedback_delay) + 1
        self.hist = deque([list(zeros) for _ in range(depth)], maxlen=depth)
        # two-state layers (Layer.du < 4095): the current register U, carried over steps
        # U[0] = u0 (Layer.u0, a bias inside the current); initial_current=False injects the fault of ignoring it
        self.Uc = [np.broadcast_to(l.full_initial_current() if o.initial_current else 0, (b, l.n_out)).astype(sdt)
                   if l.two_state and o.current_decay else None for l in sp]
        self.counts = np.zeros((b, sp[-1].n_out), dtype=np.int64)
        self.R = np.zeros((b, graph.readout.n_out), dtype=np.int64)            # leaking readout: R[t]

    def _u(self, i):
        u = _shift(i, self.plan.spiking[0].frac_bits)
        return _wrap(u, self.o.current_bits) if self.o.current_bits else u

    def _input(self, li: int, layer, t: int, cur: list):
        """Layer li's input current u at step t (<< F, wrapped where current_bits says)."""
        o, plan, sdt = self.o, self.plan, self.plan.state_dtype
        ffd = o.feedforward_delay
        if li == 0 and not plan.fb[0]:
            if t >= ffd:
                return self.u0[t - ffd] if self.varying else self.u0
            u = _shift(plan.bias[0].astype(sdt), layer.frac_bits)
            return _wrap(u, o.current_bits) if o.current_bits else u
        if li == 0:
            I = (self.I0[t - ffd] if self.varying else self.I0) if t >= ffd else plan.bias[0].astype(sdt)
        else:
            x_in = cur[li - 1] if ffd == 0 else self.hist[-ffd][li - 1]
            I = plan.syn[li](x_in, sdt) + plan.bias[li]
        for src, syn in plan.fb[li]:
            I = I + syn(self.hist[-o.feedback_delay][src], sdt)
        u = _shift(I, layer.frac_bits)
        return _wrap(u, o.current_bits) if o.current_bits else u

    def _neuron(self, li: int, layer, u, t: int, sl: slice, out: dict):
        """Layer li's spikes at step t from its input u; V (and U) updated, potentials recorded."""
        o, plan, sdt = self.o, self.plan, self.plan.state_dtype
        if self.Uc[li] is not None:   # U = trunc0(U * (4095-du)/4096) + (W s << F); V gets U + (B << F)
            b_sh = _shift(plan.bias[li].astype(sdt), layer.frac_bits)
            self.Uc[li] = _decay(self.Uc[li], int(layer.du) + 1) + (u - b_sh)
            u = self.Uc[li] + b_sh
        th = layer.threshold << layer.frac_bits
        lreset = _reset(layer, o.reset)
        v = _decay(self.V[li], self.g.decay) + u
        if lreset == RESET_SUBTRACT_UNDECAYED:     # the last step's spike subtracts after the decay
            v = v - self.hist[-1][li] * th
        v, k, vm = _limit(v, o.overflow)
        out["sat"][layer.name] += k
        out["vmax"][layer.name] = max(out["vmax"][layer.name], vm)
        s = v >= th if _compare(layer, o.tie) == COMPARE_GE else v > th
        if out["potentials"] is not None:
            out["potentials"][li][sl, t] = v
        if out["spikes"] is not None:
            out["spikes"][li][sl, t] = s
        self.V[li] = v - s * th if lreset == RESET_SUBTRACT else np.where(s, 0, v) if lreset == RESET_ZERO else v
        return s

    def run(self, sl: slice, out: dict) -> None:
        o, plan, g = self.o, self.plan, self.g
        ro, T = g.readout, g.T
        ro_decay = int(ro.decay) if o.readout_leak else 0
        first = ro.first_spike and o.first_spike
        for t in range(T):
            cur = []
            for li, layer in enumerate(plan.spiking):
                cur.append(self._neuron(li, layer, self._input(li, layer, t, cur), t, sl, out))
            self.hist.append(cur)
            d_ro = o.feedforward_delay + o.readout_delay
            last = cur[-1] if d_ro == 0 else self.hist[-1 - d_ro][-1]
            self.counts += last
            if first:                # R = T + 1 - first step (1-based) with W_o s_N[t] + B_o > 0
                drive = plan.syn[-1](last) + plan.bias[-1]
                self.R = np.where((self.R == 0) & (drive > 0), T - t, self.R)
            elif ro.decay:             # R[t] = decay_r(R[t-1]) + ((W_o s_N[t] + B_o) << F_r)
                self.R = _decay(self.R, ro_decay) + ((plan.syn[-1](last) + plan.bias[-1]) << ro.readout_shift)
        # non-leaking readout: R[T] = sum_t (W_o s_N[t] + B_o) = W_o (sum_t s_N[t]) + T * B_o
        out["readout"][sl] = self.R if (ro.decay or first) else plan.syn[-1](self.counts) + T * plan.bias[-1]


def run_emulator(graph: Graph, xq: np.ndarray, record_spikes: bool = True,
                 record_potentials: bool = False, batch_size: int = 512,
                 progress: bool = False) -> BackendResult:
    """The integer LIF form with the correct semantics (see export/ir.py) on xq [N, *input_shape].

    readout int64 [N, classes] (R[T]); spikes bool [N, T, n_out] per spiking layer when
    record_spikes; potentials int64 V[t] (after saturation, before reset) when record_potentials;
    info["saturated"][layer] counts the (sample, step, neuron) states the 24-bit clip changed,
    info["max_abs_v"][layer] is the largest |V| reached."""
    return emulate(graph, xq, record_spikes=record_spikes, record_potentials=record_potentials,
                   batch_size=batch_size, progress=progress)
