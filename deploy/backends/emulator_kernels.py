"""Compiled (numba) loops of the layer-major emulator: what BLAS cannot do in one call.

  dense_sums    W x, event-driven: each nonzero input (a spike, a count, the first layer's x_q) adds its
                value times its weight row (integer arithmetic, work proportional to the nonzero
                inputs, as on a neuromorphic chip; as fast on binary spikes as a pure-add kernel)
  conv_sums     the same for a convolution over channels-last (HWC) maps
  pool_hwc      a k x k sum pool (Layer.in_pool) of channels-last maps, in front of a dense layer
Everything here runs on numba's threads alone: no BLAS call sits between them, so the two thread
pools never spin against each other on a small machine.
  lif_layer     a spiking layer's whole recurrence for all T steps, fused: the exact synaptic sum from
                the matmul's output (float32/64 holding integers), + bias, << F, the truncating 12-bit
                decay, 24-bit saturation, the layer's compare (V >= TH<<F or >) and reset (subtractive,
                undecayed subtractive or to zero: export/ir.py), in int64 (always exact)

Both run in parallel over samples. The arithmetic is export/ir.py's; the tests compare this schedule
with emulator.py's step-by-step numpy schedule spike for spike and potential for potential.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from saf.export.ir import DECAY_BITS, DECAY_ONE, STATE_MAX


@njit(parallel=True, cache=True)
def dense_sums(x, Wt, out):
    """out[r] = sum_j x[r, j] Wt[j] for x [R, n_in] (binary spikes or integers; zeros skipped);
    Wt [n_in, n_out] integer; out [R, n_out]."""
    R, n_in = x.shape
    n_out = Wt.shape[1]
    for r in prange(R):
        acc = np.zeros(n_out, Wt.dtype)
        for j in range(n_in):
            v = x[r, j]
            if v != 0:
                for k in range(n_out):
                    acc[k] += v * Wt[j, k]
        out[r] = acc


@njit(parallel=True, cache=True)
def conv_sums(x, Wt, tab, C, out):
    """Cross-correlation of channels-last maps x [R, H*W*C] (binary spikes or integers) with
    Wt [(ky, kx, c), Co] (integer) -> out [R, Ho*Wo*Co] channels-last, event-driven: each nonzero input
    adds its value times its weight row to the output pixels it reaches (scatter_table); padding taps
    reach none."""
    R = x.shape[0]
    Co = Wt.shape[1]
    HW, KK = tab.shape
    n_out = out.shape[1]
    for r in prange(R):
        acc = np.zeros(n_out, Wt.dtype)
        for pix in range(HW):
            for c in range(C):
                v = x[r, pix * C + c]
                if v != 0:
                    for t in range(KK):
                        op = tab[pix, t]
                        if op >= 0:
                            wr = t * C + c
                            ob = op * Co
                            for k in range(Co):
                                acc[ob + k] += v * Wt[wr, k]
        out[r] = acc


@njit(parallel=True, cache=True)
def pool_hwc(x, H, W, C, k, out):
    """k x k sum pool of channels-last maps: x [R, H*W*C] -> out [R, (H/k)*(W/k)*C] (integer counts)."""
    R = x.shape[0]
    Wp = W // k
    for r in prange(R):
        o = out[r]
        o[:] = 0
        for iy in range(H):
            for ix in range(W):
                base = (iy * W + ix) * C
                ob = ((iy // k) * Wp + ix // k) * C
                for c in range(C):
                    o[ob + c] += x[r, base + c]


def scatter_table(H: int, W: int, kh: int, kw: int, stride: int, pad: int, Ho: int, Wo: int) -> np.ndarray:
    """tab[iy*W + ix, ky*kw + kx] = the output pixel oy*Wo + ox that input pixel (iy, ix) reaches through
    tap (ky, kx) of a cross-correlation (iy = oy*stride - pad + ky), or -1 where there is none."""
    tab = -np.ones((H * W, kh * kw), dtype=np.int64)
    iy, ix = np.divmod(np.arange(H * W), W)
    for ky in range(kh):
        for kx in range(kw):
            ty, tx = iy + pad - ky, ix + pad - kx
            ok = (ty >= 0) & (tx >= 0) & (ty % stride == 0) & (tx % stride == 0) & \
                (ty // stride < Ho) & (tx // stride < Wo)
            tab[ok, ky * kw + kx] = (ty[ok] // stride) * Wo + tx[ok] // stride
    return tab


# reset codes of lif_layer (train/neuron_modes.py's names, as numba wants ints)
RESET_CODES = {"subtract": 0, "subtract-undecayed": 1, "zero": 2}


@njit(parallel=True, cache=True)
def lif_layer(I, T, constant, bias, F, th, m, v0, S, V_rec, record_v, sat, vmax, strict, reset):
    """One spiking layer for B samples and T steps, neurons in I's order.

    I [rows, n]: the synaptic sums W s_in, integers (or floats holding exact integers); rows = B*T (row b*T + t), or B
       when `constant` (the same input every step).
    bias [n] int64, F frac bits, th = TH << F, m = 4096 - D, v0 initial potential.
    strict: fire on V > th (compare ">"), else V >= th. reset (RESET_CODES): 0 V' = V - th on a spike, 1 V' = V and
       the next step subtracts th after the decay (subtract-undecayed), 2 V' = 0.
    S [B, T, n] bool spikes out; V_rec [B, T, n] int64 potentials out when record_v.
    sat[b] counts the clipped states of sample b; vmax[b] its largest |V|."""
    n = I.shape[1]
    B = S.shape[0]
    rs = np.int64(1) if constant else np.int64(T)       # row of (b, t): b * rs + t * ts
    ts = np.int64(0) if constant else np.int64(1)
    for b in prange(B):
        v = np.full(n, v0, dtype=np.int64)
        owe = np.zeros(n, dtype=np.int64)               # subtract-undecayed: th after a spike, else 0
        cnt = 0
        top = 0
        for t in range(T):
            r = np.int64(b) * rs + np.int64(t) * ts
            for j in range(n):
                x = v[j]
                a = x if x >= 0 else -x
                mag = (a * m) >> DECAY_BITS
                x = (mag if x >= 0 else -mag) - owe[j] + ((np.int64(I[r, j]) + bias[j]) << F)
                y = min(max(x, -STATE_MAX), STATE_MAX)
                cnt += y != x
                a = y if y >= 0 else -y
                top = max(top, a)
                if record_v:
                    V_rec[b, t, j] = y
                s = y > th if strict else y >= th
                S[b, t, j] = s
                if reset == 0:
                    v[j] = y - th if s else y
                elif reset == 2:
                    v[j] = 0 if s else y
                else:
                    v[j] = y
                    owe[j] = th if s else 0
        sat[b] = cnt
        vmax[b] = top


def decay_factor(D: int) -> int:
    """m = 4096 - D, the multiplier of the truncating decay."""
    return DECAY_ONE - int(D)


def decay_trunc(v: np.ndarray, decay: int) -> np.ndarray:
    """sign(v) * ((|v| * (4096 - D)) >> 12), truncation toward zero. int64, or float64 holding
    integers below 2^41: then v * ((4096 - D) / 4096) is the exact rational (the factor is a dyadic
    fraction and the product stays below 2^53) and trunc rounds it toward zero exactly."""
    if decay == 0:
        return v
    if v.dtype == np.float64:
        return np.trunc(v * ((DECAY_ONE - decay) / DECAY_ONE))
    mag = (np.abs(v) * (DECAY_ONE - decay)) >> DECAY_BITS
    return np.where(v < 0, -mag, mag)
