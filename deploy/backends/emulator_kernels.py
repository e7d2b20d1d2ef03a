"""Compiled (numba) loops of the layer-major emulator.

Row helpers (one (sample, step) row; the arithmetic of every kernel below):
  _dense_row    W x, event-driven: each nonzero input (a spike, a count, the first layer's x_q) adds its
                value times its weight row (integer arithmetic, work proportional to the nonzero
                inputs, as on a neuromorphic chip)
  _conv_row     the same for a convolution over channels-last (HWC) maps (scatter_table)
  _pool_row     a k x k sum pool (Layer.in_pool) of a channels-last map, in front of a dense layer
  _lif_sample   one sample's neuron recurrence over T steps: + bias, << F, the truncating 12-bit decay,
                24-bit saturation, the layer's compare (V >= TH<<F or >) and reset (subtractive,
                undecayed subtractive or to zero: export/ir.py), in int64 (always exact)
Kernels (parallel over samples):
  spiking_layer a whole spiking layer, fused per sample: its synaptic sums for the sample's T rows (one
                row for a constant input) into a small buffer, then the recurrence over them, so the
                sums never travel through memory and the layer costs one parallel launch (a launch is a
                barrier: on a loaded 2-core machine each one can wait for a descheduled thread)
  dense_sums / conv_sums / pool_hwc   the sums alone (the readout; tests)
Everything here runs on numba's threads alone (no BLAS call between them). The arithmetic is export/ir.py's;
the tests compare this schedule with emulator.py's step-by-step numpy schedule spike for spike and
potential for potential, and with saf-int (export/proof/saf_int.py).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from saf.export.ir import DECAY_BITS, DECAY_ONE, STATE_MAX


@njit(cache=True, inline="always")
def _dense_row(x, r, Wt, acc):
    """acc = sum_j x[r, j] Wt[j] (zeros skipped); returns the nonzero inputs (each costs n_out multiply-adds)."""
    acc[:] = 0
    n_out = Wt.shape[1]
    h = 0
    for j in range(x.shape[1]):
        v = x[r, j]
        if v != 0:
            h += 1
            for k in range(n_out):
                acc[k] += v * Wt[j, k]
    return h


@njit(cache=True, inline="always")
def _conv_row(x, r, Wt, tab, ntap, C, acc):
    """acc = the cross-correlation of row r of channels-last maps x [R, H*W*C] with Wt [(ky, kx, c), Co]
    -> [Ho*Wo*Co] channels-last: each nonzero input adds its value times its weight row to the output pixels
    it reaches (tab = scatter_table; padding taps reach none); returns sum of ntap over the nonzero inputs."""
    acc[:] = 0
    Co = Wt.shape[1]
    HW, KK = tab.shape
    h = 0
    for pix in range(HW):
        for c in range(C):
            v = x[r, pix * C + c]
            if v != 0:
                h += ntap[pix]
                for t in range(KK):
                    op = tab[pix, t]
                    if op >= 0:
                        wr = t * C + c
                        ob = op * Co
                        for k in range(Co):
                            acc[ob + k] += v * Wt[wr, k]
    return h


@njit(cache=True, inline="always")
def _pool_row(x, r, H, W, C, k, o):
    """o = the k x k sum pool of row r of channels-last maps x [R, H*W*C] -> [(H/k)*(W/k)*C] (integer counts)."""
    o[:] = 0
    Wp = W // k
    for iy in range(H):
        for ix in range(W):
            base = (iy * W + ix) * C
            ob = ((iy // k) * Wp + ix // k) * C
            for c in range(C):
                o[ob + c] += x[r, base + c]


@njit(parallel=True, cache=True)
def dense_sums(x, Wt, out, hits):
    """out[r] = sum_j x[r, j] Wt[j] for x [R, n_in] (binary spikes or integers; zeros skipped);
    Wt [n_in, n_out] integer; out [R, n_out]. hits[r] = the nonzero inputs of row r (each costs n_out
    multiply-adds: the work executed, counted where it is done)."""
    for r in prange(x.shape[0]):
        acc = np.empty(Wt.shape[1], Wt.dtype)
        hits[r] = _dense_row(x, r, Wt, acc)
        out[r] = acc


@njit(parallel=True, cache=True)
def conv_sums(x, Wt, tab, ntap, C, out, hits):
    """_conv_row for every row of x [R, H*W*C] -> out [R, Ho*Wo*Co]; hits[r] = its valid taps hit
    (ntap = taps(tab); each tap costs Co multiply-adds)."""
    for r in prange(x.shape[0]):
        acc = np.empty(out.shape[1], Wt.dtype)
        hits[r] = _conv_row(x, r, Wt, tab, ntap, C, acc)
        out[r] = acc


@njit(parallel=True, cache=True)
def pool_hwc(x, H, W, C, k, out):
    """k x k sum pool of channels-last maps: x [R, H*W*C] -> out [R, (H/k)*(W/k)*C] (integer counts)."""
    for r in prange(x.shape[0]):
        o = np.empty(out.shape[1], out.dtype)
        _pool_row(x, r, H, W, C, k, o)
        out[r] = o


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


def taps(tab: np.ndarray) -> np.ndarray:
    """ntap[pix]: how many output pixels input pixel pix reaches (the valid entries of its scatter_table row)."""
    return (tab >= 0).sum(axis=1).astype(np.int64)


# reset codes of the neuron loop (train/neuron_modes.py's names, as numba wants ints)
RESET_CODES = {"subtract": 0, "subtract-undecayed": 1, "zero": 2}


@njit(cache=True, inline="always")
def _lif_sample(I, T, bias, F, th, m, v0, strict, reset, S, V_rec, record_v):
    """One sample's recurrence over T steps, neurons in I's order. I [rows, n]: the synaptic sums W s_in
    (integers); rows = T (step t reads row t) or 1 (a constant input: every step reads row 0).
    bias [n] int64, F frac bits, th = TH << F, m = 4096 - D, v0 initial potential.
    strict: fire on V > th (compare ">"), else V >= th. reset (RESET_CODES): 0 V' = V - th on a spike, 1 V' = V and
    the next step subtracts th after the decay (subtract-undecayed), 2 V' = 0.
    S [T, n] bool spikes out; V_rec [T, n] int64 potentials out when record_v.
    Returns (the clipped states, the largest |V|)."""
    n = I.shape[1]
    step = 1 if I.shape[0] > 1 else 0
    # the compare and reset as arithmetic on s in {0, 1} (no branch in the neuron loop, so it vectorizes):
    # V > th is V >= th + 1 on integers; V' = (V - s*sub) * (1 - s*zero); owe' = s*owe_th
    thc = np.int64(th + 1) if strict else np.int64(th)
    sub = np.int64(th) if reset == 0 else np.int64(0)
    zero = np.int64(1) if reset == 2 else np.int64(0)
    owe_th = np.int64(th) if reset == 1 else np.int64(0)
    lo, hi = np.int64(-STATE_MAX), np.int64(STATE_MAX)
    v = np.full(n, v0, dtype=np.int64)
    owe = np.zeros(n, dtype=np.int64)               # subtract-undecayed: th after a spike, else 0
    cur = np.empty(n, dtype=np.int64)
    cnt = 0
    top = 0
    for t in range(T):
        q = t * step
        for j in range(n):
            cur[j] = (np.int64(I[q, j]) + bias[j]) << F
        for j in range(n):
            x = v[j]
            a = x if x >= 0 else -x
            mag = (a * m) >> DECAY_BITS
            x = (mag if x >= 0 else -mag) - owe[j] + cur[j]
            y = min(max(x, lo), hi)
            cnt += y != x
            top = max(top, y if y >= 0 else -y)
            s = np.int64(y >= thc)
            S[t, j] = s != 0
            v[j] = (y - s * sub) * (1 - s * zero)
            owe[j] = s * owe_th
            cur[j] = y
        if record_v:
            V_rec[t] = cur
    return cnt, top


@njit(parallel=True, cache=True)
def spiking_layer(x, constant, Wt, tab, ntap, C, pool, bias, F, th, m, v0, strict, reset, S, V_rec, record_v,
                  sat, vmax, hits):
    """One spiking layer for B samples and T steps, fused per sample. x [B*T, n_in] (row b*T + t) or [B, n_in]
    when `constant` (the same input every step), channels-last for a map: binary spikes, counts or x_q.
    A conv when tab has rows (tab = scatter_table, ntap = taps(tab), C input channels), else dense; a dense
    layer with pool = (H, W, C, k), k > 1, sum-pools its input first (pool = (0, 0, 0, 1): none).
    Wt, bias, F, th, m, v0, strict, reset: _lif_sample's (Wt: conv rows (ky, kx, c) x Co, dense rows in the
    input's layout). S [B, T, n] bool out; V_rec [B, T, n] when record_v. sat[b], vmax[b]: sample b's
    clipped states and largest |V|; hits[b]: its nonzero inputs (dense, after the pool) or valid taps hit (conv)."""
    B, T, n = S.shape
    rows = 1 if constant else T
    conv = tab.shape[0] > 0
    ph, pw, pc, pk = pool
    for b in prange(B):
        I = np.empty((rows, n), Wt.dtype)
        counts = np.empty((ph // pk) * (pw // pk) * pc if pk > 1 else 0, Wt.dtype)
        h = 0
        for q in range(rows):
            r = b * rows + q
            if conv:
                h += _conv_row(x, r, Wt, tab, ntap, C, I[q])
            elif pk > 1:
                _pool_row(x, r, ph, pw, pc, pk, counts)
                h += _dense_row(counts.reshape(1, -1), 0, Wt, I[q])
            else:
                h += _dense_row(x, r, Wt, I[q])
        hits[b] = h
        sat[b], vmax[b] = _lif_sample(I, T, bias, F, th, m, v0, strict, reset, S[b],
                                      V_rec[b] if record_v else V_rec[0], record_v)


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
