"""Fast bit-accurate emulator of the integer LIF form (export/ir.py's docstring is the spec).

Numpy only, batched over samples. Synapses are exact integer sums computed with BLAS: a layer's
weights and inputs are integers, so a float32 (float64) matmul is exact whenever every partial sum
stays below 2^24 (2^53) in magnitude; `_Synapse` bounds max_row(sum |w|) * max|input| and picks
float32, float64 or (beyond 2^53) int64 accordingly. Small convolutions are unrolled once into a
dense matrix; large ones use a strided im2col view (sliding_window_view) and one matmul per step.

`emulate` takes fault-injection options so the verifier's tests can show each fault is caught:
  tie="gt"             fire on V > TH<<F instead of V >= TH<<F (Lava's strict comparison, unconverted)
  reset="zero"         hard reset (V' = 0 on a spike) instead of subtractive
  feedforward_delay=d  every feedforward connection (input, layer to layer, readout) delayed d steps
                       (d = 1: Lava's per-connection delay left uncompensated)
  feedback_delay=d     delay of feedback edges (correct: 1; 2 = one step too many)
  overflow="wrap"      24-bit wrap-around instead of saturation
  current_bits=b       the current I << F held in a b-bit register that wraps (Loihi's u register is
                       24 bits and the certificate keeps it from wrapping; b = 21: a too-narrow one)
  readout_leak=False   the readout's leak ignored (a plain sum where the trained readout leaks)
The defaults are the correct semantics (CONVENTION: fire at V >= TH<<F, subtractive reset).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from saf.export.ir import DECAY_BITS, DECAY_ONE, STATE_BITS, STATE_MAX, Convention, Graph

from .result import BackendResult

# What emulate() computes with its default options (declared for the certificate's convention row).
CONVENTION = Convention(">=", "subtract")
# Convolutions with n_in * n_out up to this many entries are unrolled into a dense matrix.
DENSE_CONV_LIMIT = 1 << 22


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
        if kind == "conv" and n_in * max(n_in, n_out) <= DENSE_CONV_LIMIT:
            eye = np.eye(n_in, dtype=np.int64).reshape(n_in, *in_shape)
            self.mat = _conv_im2col(eye, w, stride, padding).reshape(n_in, n_out).astype(self.dtype)
        elif kind == "conv":
            self.w = w.astype(self.dtype)
        else:
            self.mat = w.T.astype(self.dtype)                                          # n_in, n_out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(self.dtype, copy=False)
        if self.mat is not None:
            y = x @ self.mat
        else:
            y = _conv_im2col(x.reshape(x.shape[0], *self.in_shape), self.w, self.stride,
                             self.padding).reshape(x.shape[0], -1)
        return y.astype(np.int64)     # exact: every partial sum is an integer below 2^24 / 2^53


def _decay(v: np.ndarray, decay: int) -> np.ndarray:
    """sign(v) * ((|v| * (4096 - D)) >> 12), truncation toward zero, int64."""
    if decay == 0:
        return v
    mag = (np.abs(v) * (DECAY_ONE - decay)) >> DECAY_BITS
    return np.where(v < 0, -mag, mag)


def _wrap(v: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def _limit(v: np.ndarray, overflow: str) -> tuple:
    """Apply the 24-bit state limit; returns (limited state, number of elements changed)."""
    if overflow == "clip":
        out = np.clip(v, -STATE_MAX, STATE_MAX)
    elif overflow == "wrap":
        out = _wrap(v, STATE_BITS)
    else:
        raise ValueError(f"overflow must be 'clip' or 'wrap', got {overflow!r}")
    return out, int(np.count_nonzero(out != v))


class _Plan:
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
            self.syn.append(_Synapse(layer.kind if layer.kind != "readout" else "dense", layer.weight,
                                     layer.in_shape, layer.out_shape, layer.stride, layer.padding,
                                     x_max if i == 0 else (graph.T if not layer.spiking else 1),
                                     layer.name))
            self.bias.append(layer.full_bias())
        self.fb = [[] for _ in range(n_sp)]
        for f in graph.feedback:
            if not (0 <= f.dst <= f.src < n_sp):
                raise ValueError(f"feedback {f.src}->{f.dst} must join spiking layers with dst <= src")
            src, dst = self.spiking[f.src], self.spiking[f.dst]
            syn = _Synapse(f.kind, f.weight, src.out_shape, dst.out_shape, f.stride, f.padding, 1,
                           f"feedback {f.src}->{f.dst}")
            self.fb[f.dst].append((f.src, syn))


def emulate(graph: Graph, xq: np.ndarray, *, tie: str = "ge", reset: str = "subtract",
            feedforward_delay: int = 0, feedback_delay: int = 1, overflow: str = "clip",
            current_bits: int = 0, readout_leak: bool = True, initial_potential: bool = True,
            record_spikes: bool = True,
            record_potentials: bool = False, batch_size: int = 512,
            progress: bool = False, plan: _Plan = None) -> BackendResult:
    """Run the integer LIF form on xq [N, *input_shape]; the keyword options inject faults."""
    if tie not in ("ge", "gt"):
        raise ValueError(f"tie must be 'ge' or 'gt', got {tie!r}")
    if reset not in ("subtract", "zero"):
        raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
    if feedforward_delay < 0 or feedback_delay < 1:
        raise ValueError("need feedforward_delay >= 0 and feedback_delay >= 1")
    t0 = time.perf_counter()
    xq = np.asarray(xq, dtype=np.int64)
    n = xq.shape[0]
    xq = xq.reshape(n, -1)
    x_abs = int(np.abs(xq).max(initial=0))
    if plan is None or x_abs > plan.x_max:      # inputs beyond input_bits: re-derive exact dtypes
        plan = _Plan(graph, x_abs)
    T, sp = graph.T, plan.spiking
    ro = graph.readout
    ro_decay = int(ro.decay) if readout_leak else 0
    readout = np.zeros((n, ro.n_out), dtype=np.int64)
    spikes = [np.zeros((n, T, l.n_out), dtype=bool) for l in sp] if record_spikes else None
    pots = [np.zeros((n, T, l.n_out), dtype=np.int64) for l in sp] if record_potentials else None
    sat = {l.name: 0 for l in sp}
    vmax = {l.name: 0 for l in sp}
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        b = sl.stop - sl.start
        I0 = plan.syn[0](xq[sl])                                # the constant input current (no bias)
        # V'[0] = v0 (Layer.v0, DSR's alpha firing); initial_potential=False injects the fault of ignoring it
        V = [np.full((b, l.n_out), int(l.v0) if initial_potential else 0, dtype=np.int64) for l in sp]
        zeros = [np.zeros((b, l.n_out), dtype=bool) for l in sp]
        # hist[t'] = list of spike arrays of step t' (most recent last), enough for both delays
        depth = max(feedforward_delay, feedback_delay) + 1
        hist = deque([list(zeros) for _ in range(depth)], maxlen=depth)
        counts = np.zeros((b, sp[-1].n_out), dtype=np.int64)
        R = np.zeros((b, ro.n_out), dtype=np.int64)            # leaking readout: R[t]
        for t in range(T):
            cur = []
            for li, layer in enumerate(sp):
                if li == 0:
                    I = I0 if t >= feedforward_delay else 0
                elif feedforward_delay == 0:
                    I = plan.syn[li](cur[li - 1])
                else:
                    I = plan.syn[li](hist[-feedforward_delay][li - 1])
                I = I + plan.bias[li]
                for src, syn in plan.fb[li]:
                    I = I + syn(hist[-feedback_delay][src])
                u = I << layer.frac_bits
                v = _decay(V[li], graph.decay) + (_wrap(u, current_bits) if current_bits else u)
                v, k = _limit(v, overflow)
                sat[layer.name] += k
                vmax[layer.name] = max(vmax[layer.name], int(np.abs(v).max(initial=0)))
                th = layer.threshold << layer.frac_bits
                s = v >= th if tie == "ge" else v > th
                if pots is not None:
                    pots[li][sl, t] = v
                if spikes is not None:
                    spikes[li][sl, t] = s
                V[li] = v - s * th if reset == "subtract" else np.where(s, 0, v)
                cur.append(s)
            hist.append(cur)
            last = cur[-1] if feedforward_delay == 0 else hist[-1 - feedforward_delay][-1]
            counts += last
            if ro.decay:             # R[t] = decay_r(R[t-1]) + ((W_o s_N[t] + B_o) << F_r)
                R = _decay(R, ro_decay) + ((plan.syn[-1](last) + plan.bias[-1]) << ro.readout_shift)
        # non-leaking readout: R[T] = sum_t (W_o s_N[t] + B_o) = W_o (sum_t s_N[t]) + T * B_o
        readout[sl] = R if ro.decay else plan.syn[-1](counts) + T * plan.bias[-1]
        if progress:
            print(f"emulator: {sl.stop}/{n} samples", flush=True)
    info = {"saturated": sat, "max_abs_v": vmax,
            "faults": {"tie": tie, "reset": reset, "feedforward_delay": feedforward_delay,
                       "feedback_delay": feedback_delay, "overflow": overflow,
                       "current_bits": current_bits, "readout_leak": readout_leak,
                       "initial_potential": initial_potential},
            "synapse_dtypes": {s.name: np.dtype(s.dtype).name for s in plan.syn}}
    return BackendResult(backend="emulator", readout=readout, spikes=spikes, potentials=pots,
                         seconds=time.perf_counter() - t0, info=info)


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
