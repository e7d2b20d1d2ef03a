"""Spec oracle: a literal, slow, one-sample-at-a-time transcription of the integer LIF semantics
in export/ir.py's docstring (each layer's compare and reset modes included; two-state layers' current register
U with its initial current U[0] = u0). Backends (emulator, Lava, ONNX) are tested against it; it shares no
code with any of them (plain Python ints for the state, explicit loops for convolution)."""
from __future__ import annotations

import numpy as np

STATE_MAX = (1 << 23) - 1


def _decay(x: int, decay: int) -> int:
    m = 4096 - decay
    mag = (abs(x) * m) >> 12
    return mag if x >= 0 else -mag


def _conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation, x [C, H, W], w [Co, C, kh, kw] -> [Co, Ho, Wo] (int64, explicit loops)."""
    c, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad), dtype=np.int64)
    xp[:, pad:pad + h, pad:pad + wd] = x
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((co, ho, wo), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
            for o in range(co):
                out[o, i, j] = int((patch * w[o]).sum())
    return out


def _synapse(kind, w, x, in_shape, out_shape, stride, pad):
    if kind == "conv":
        return _conv(x.reshape(in_shape), w, stride, pad).reshape(-1)
    return w @ x.reshape(-1)


def _bias_full(layer) -> np.ndarray:
    if layer.kind == "conv":
        return np.repeat(layer.bias, int(np.prod(layer.out_shape[1:])))
    return layer.bias


def _u0_full(layer) -> list:
    """U[0] per neuron: Layer.u0 (per conv channel or dense neuron) on a two-state layer, else 0."""
    u0 = getattr(layer, "u0", None)
    if u0 is None or layer.du == 4095:
        return [0] * layer.n_out
    u0 = [int(u) for u in u0]
    per = layer.n_out // len(u0)
    return [u for u in u0 for _ in range(per)]


def reference_run(graph, xq_one: np.ndarray):
    """One sample. Returns (readout R[T] as int64 [classes], spikes per spiking layer [T, n],
    potentials per spiking layer [T, n] (V[t] before reset))."""
    spiking = [l for l in graph.layers if l.spiking]
    V = [[int(getattr(l, "v0", 0))] * l.n_out for l in spiking]      # V'[0] = v0 (initial potential)
    U = [[int(u) for u in _u0_full(l)] for l in spiking]               # U[0] = u0 (two-state layers)
    owed = [[0] * l.n_out for l in spiking]                            # subtract-undecayed: TH<<F owed
    prev_s = [np.zeros(l.n_out, dtype=np.int64) for l in spiking]
    spikes = [np.zeros((graph.T, l.n_out), dtype=bool) for l in spiking]
    pots = [np.zeros((graph.T, l.n_out), dtype=np.int64) for l in spiking]
    R = np.zeros(graph.readout.n_out, dtype=np.int64)
    for t in range(graph.T):
        x = np.asarray(xq_one, dtype=np.int64)
        # a spike train / frames [T, *input_shape] feeds frame t at step t; an image every step
        s_in = (x[t] if x.ndim == len(graph.input_shape) + 1 else x).reshape(-1)
        cur_s = []
        for li, layer in enumerate(spiking):
            I = _synapse(layer.kind, layer.weight, s_in, layer.in_shape, layer.out_shape,
                         layer.stride, layer.padding) + _bias_full(layer)
            for fb in graph.feedback:
                if fb.dst == li:
                    src_layer = spiking[fb.src]
                    I = I + _synapse(fb.kind, fb.weight, prev_s[fb.src], src_layer.out_shape,
                                     layer.out_shape, fb.stride, fb.padding)
            th = layer.threshold << layer.frac_bits
            s = np.zeros(layer.n_out, dtype=np.int64)
            reset, strict = getattr(layer, "reset", "subtract"), getattr(layer, "compare", ">=") == ">"
            bias = _bias_full(layer)
            for n in range(layer.n_out):
                if layer.du != 4095:          # U = trunc0(U (4095-du)/4096) + ((I - B) << F); V gets U + (B << F)
                    U[li][n] = _decay(U[li][n], layer.du + 1) + ((int(I[n]) - int(bias[n])) << layer.frac_bits)
                    drive = U[li][n] + (int(bias[n]) << layer.frac_bits)
                else:
                    drive = int(I[n]) << layer.frac_bits
                v = _decay(V[li][n], graph.decay) - owed[li][n] + drive
                v = max(-STATE_MAX, min(STATE_MAX, v))
                pots[li][t, n] = v
                owed[li][n] = 0
                if (v > th) if strict else (v >= th):
                    s[n] = 1
                    if reset == "subtract":
                        v -= th
                    elif reset == "zero":
                        v = 0
                    else:                     # subtract-undecayed: after the next step's decay
                        owed[li][n] = th
                V[li][n] = v
            spikes[li][t] = s.astype(bool)
            cur_s.append(s)
            s_in = s
        ro = graph.readout
        I = ro.weight @ s_in + ro.bias
        if ro.decay:                   # leaking readout: R = decay(R) + (I << F), F = its frac_bits
            R = np.array([_decay(int(R[c]), ro.decay) + (int(I[c]) << ro.frac_bits)
                          for c in range(ro.n_out)], dtype=np.int64)
        else:
            R = R + I
        prev_s = cur_s
    return R, spikes, pots


def reference_batch(graph, xq: np.ndarray):
    """Many samples: readout [N, classes] and spikes per layer [N, T, n]."""
    outs = [reference_run(graph, x) for x in xq]
    readout = np.stack([o[0] for o in outs])
    spikes = [np.stack([o[1][i] for o in outs]) for i in range(len(outs[0][1]))]
    pots = [np.stack([o[2][i] for o in outs]) for i in range(len(outs[0][2]))]
    return readout, spikes, pots
