"""Compiled (numba) loops of the layer-major emulator.

Row helpers (one (sample, step) row; the arithmetic of every kernel below):
  _dense_row    W x, event-driven: each nonzero input (a spike, a count, the first layer's x_q) adds its
                value times its weight row (integer arithmetic, work proportional to the nonzero
                inputs, as on a neuromorphic chip)
  _conv_row     the same for a convolution over channels-last (HWC) maps (scatter_table as conv_runs)
  _pool_row     a k x k sum pool (Layer.in_pool) of a channels-last map, in front of a dense layer
  _lif_sample   one sample's neuron recurrence over T steps: + bias, << F, the truncating 12-bit decay,
                24-bit saturation, the layer's compare (V >= TH<<F or >) and reset (subtractive,
                undecayed subtractive or to zero: export/ir.py), in int64 (always exact)
Kernels:
  spiking_layer a whole spiking layer, parallel over samples, fused per sample: its synaptic sums for
                the sample's T rows (one row for a constant input) into a small buffer, then the
                recurrence over them, so the sums never travel through memory and the layer costs one
                parallel launch (a launch is a barrier: on a loaded 2-core machine each one can wait for
                a descheduled thread)
  dense_sums / conv_sums / pool_hwc   the sums alone, serial: the readout's (a few multiply-adds per
                sample, less than one parallel launch costs) and the tests'
Everything here runs on numba's threads alone (no BLAS call between them). The arithmetic is export/ir.py's;
the tests compare this schedule with emulator.py's step-by-step numpy schedule spike for spike and
potential for potential, and with saf-int (export/proof/saf_int.py).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from saf.export.ir import DECAY_BITS, DECAY_ONE, STATE_MAX


@njit(cache=True)
def _add_rows(a, Wt, wb, nz, nn, x, r, xb):
    """a += sum_i x[r, xb + nz[i]] * Wt[wb + nz[i]] over i < nn, four rows per pass over a (a's loads and
    stores, the loop's bottleneck, shared by four rows; indices k >= 0 on row views vectorize). Dense rows
    only: on a conv's short rows (Co outputs) it measured no faster than one row per pass."""
    i = 0
    while i + 4 <= nn:
        j1, j2, j3, j4 = nz[i], nz[i + 1], nz[i + 2], nz[i + 3]
        v1, v2, v3, v4 = x[r, xb + j1], x[r, xb + j2], x[r, xb + j3], x[r, xb + j4]
        w1, w2, w3, w4 = Wt[wb + j1], Wt[wb + j2], Wt[wb + j3], Wt[wb + j4]
        for k in range(a.shape[0]):
            a[k] += v1 * w1[k] + v2 * w2[k] + v3 * w3[k] + v4 * w4[k]
        i += 4
    while i < nn:
        j = nz[i]
        v = x[r, xb + j]
        w = Wt[wb + j]
        for k in range(a.shape[0]):
            a[k] += v * w[k]
        i += 1


@njit(cache=True)
def _dense_row(x, r, Wt, acc, nz):
    """acc = sum_j x[r, j] Wt[j] (zeros skipped: the nonzero inputs are listed first, without a branch,
    into the scratch nz [n_in]); returns how many there were (each costs n_out multiply-adds)."""
    acc[:] = 0
    nn = 0
    for j in range(x.shape[1]):
        nz[nn] = j
        nn += x[r, j] != 0
    _add_rows(acc, Wt, 0, nz, nn, x, r, 0)
    return nn


@njit(cache=True)
def _conv_row(x, r, Wt, ptr, wofs, oofs, rlen, ntap, cstride, C, acc, nzc):
    """acc = the cross-correlation of row r of channels-last maps x [R, H*W*C] -> [Ho*Wo*Co] channels-last,
    event-driven: each nonzero input adds its value times its weight rows to the output pixels it reaches.
    Wt: run_weights (rows (ky, c, kx reversed) x Co); (ptr, wofs, oofs, rlen, ntap, cstride) = conv_runs:
    for e in ptr[pix]:ptr[pix+1], input pixel pix of channel c adds Wt.flat[wofs[e] + c*cstride:][:rlen[e]]
    to acc[oofs[e]:][:rlen[e]] (a run: taps of one kernel row reaching consecutive output pixels, one
    contiguous block of weights at stride 1; padding taps reach none). The pixel's nonzero channels are
    listed first without a branch (nzc, scratch [C]); offsets are checked >= 0 once per run, so the inner
    loop carries no wrap-around select and vectorizes. Returns the (nonzero input, output pixel) pairs
    (ntap[pix] per nonzero input of pixel pix; each pair costs Co multiply-adds)."""
    acc[:] = 0
    Wf = Wt.ravel()
    h = 0
    for pix in range(ptr.shape[0] - 1):
        e0, e1 = ptr[pix], ptr[pix + 1]
        base = pix * C
        nn = 0
        for c in range(C):
            nzc[nn] = c
            nn += x[r, base + c] != 0
        h += nn * ntap[pix]
        for i in range(nn):
            c = nzc[i]
            v = x[r, base + c]
            cw = c * cstride
            for e in range(e0, e1):
                wb = wofs[e] + cw
                ob = oofs[e]
                if wb >= 0 and ob >= 0:       # always (conv_runs); tells the compiler so
                    for k in range(rlen[e]):
                        acc[ob + k] += v * Wf[wb + k]
    return h


@njit(cache=True)
def _pool_row(x, r, H, W, C, k, o, rowsum):
    """o = the k x k sum pool of row r of channels-last maps x [R, H*W*C] -> [(H/k)*(W/k)*C] (integer counts):
    the k map rows of a pooled row summed first along their whole W*C length (rowsum, scratch [W*C]: a long
    loop that vectorizes), then each pooled pixel's k columns of C channels."""
    o[:] = 0
    WC = W * C
    Wp = W // k
    for iy in range(H):
        off = iy * WC
        if off >= 0:
            if iy % k == 0:
                for q in range(WC):
                    rowsum[q] = x[r, off + q]
            else:
                for q in range(WC):
                    rowsum[q] += x[r, off + q]
        if iy % k == k - 1:
            for px in range(Wp):
                ob = ((iy // k) * Wp + px) * C
                for dx in range(k):
                    ib = (px * k + dx) * C
                    if ob >= 0 and ib >= 0:
                        for c in range(C):
                            o[ob + c] += rowsum[ib + c]


@njit(cache=True)
def dense_sums(x, Wt, out, hits):
    """out[r] = sum_j x[r, j] Wt[j] for x [R, n_in] (binary spikes or integers; zeros skipped);
    Wt [n_in, n_out] integer; out [R, n_out]. hits[r] = the nonzero inputs of row r (each costs n_out
    multiply-adds: the work executed, counted where it is done)."""
    nz = np.empty(x.shape[1], np.int64)
    for r in range(x.shape[0]):
        acc = np.empty(Wt.shape[1], Wt.dtype)
        hits[r] = _dense_row(x, r, Wt, acc, nz)
        out[r] = acc


@njit(cache=True)
def conv_sums(x, Wt, ptr, wofs, oofs, rlen, ntap, cstride, C, out, hits):
    """_conv_row for every row of x [R, H*W*C] -> out [R, Ho*Wo*Co]; hits[r] = its (nonzero input, output
    pixel) pairs (each costs Co multiply-adds)."""
    nzc = np.empty(C, np.int64)
    for r in range(x.shape[0]):
        acc = np.empty(out.shape[1], Wt.dtype)
        hits[r] = _conv_row(x, r, Wt, ptr, wofs, oofs, rlen, ntap, cstride, C, acc, nzc)
        out[r] = acc


@njit(cache=True)
def pool_hwc(x, H, W, C, k, out):
    """k x k sum pool of channels-last maps: x [R, H*W*C] -> out [R, (H/k)*(W/k)*C] (integer counts)."""
    rowsum = np.empty(W * C, out.dtype)
    for r in range(x.shape[0]):
        o = np.empty(out.shape[1], out.dtype)
        _pool_row(x, r, H, W, C, k, o, rowsum)
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


class ConvRuns(NamedTuple):
    """A convolution's scatter_table as runs (conv_runs), in the flat offsets _conv_row reads."""
    ptr: np.ndarray         # [H*W + 1]: the runs of input pixel pix are ptr[pix]:ptr[pix+1]
    wofs: np.ndarray        # a run's first weight in run_weights' flat layout, channel 0
    oofs: np.ndarray        # its first output, flat channels-last (opix * Co)
    rlen: np.ndarray        # its length in outputs (taps * Co)
    ntap: np.ndarray        # [H*W]: the output pixels input pixel pix reaches (the work it costs, / Co)
    cstride: int            # the weight offset of one input channel (kw * Co)


def run_weights(w: np.ndarray) -> np.ndarray:
    """Conv weights w [Co, C, kh, kw] as rows (ky, c, kx reversed) x Co: the taps of one kernel row that an
    input reaches, read in reversed kx, land on consecutive output pixels (stride 1), so their weights
    are one contiguous block."""
    co, c, kh, kw = w.shape
    return np.ascontiguousarray(w[:, :, :, ::-1].transpose(2, 1, 3, 0).reshape(kh * c * kw, co))


def conv_runs(tab: np.ndarray, kh: int, kw: int, C: int, Co: int) -> ConvRuns:
    """scatter_table tab [H*W, kh*kw] (ky*kw + kx -> output pixel or -1) as runs: per input pixel and kernel
    row ky, the valid taps in reversed kx whose output pixels are consecutive (all of them at stride 1,
    one each at a larger stride)."""
    ptr, wofs, oofs, rlen = [0], [], [], []
    for pix in range(tab.shape[0]):
        last = None                                   # (ky, kx reversed, output pixel, taps) of the open run
        for ky in range(kh):
            for kxr in range(kw):
                op = int(tab[pix, ky * kw + (kw - 1 - kxr)])
                if op < 0:
                    continue
                if last is not None and last[0] == ky and last[1] + last[3] == kxr and last[2] + last[3] == op:
                    last[3] += 1
                    rlen[-1] += Co
                    continue
                last = [ky, kxr, op, 1]
                wofs.append((ky * C * kw + kxr) * Co)
                oofs.append(op * Co)
                rlen.append(Co)
        ptr.append(len(wofs))
    i64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return ConvRuns(i64(ptr), i64(wofs), i64(oofs), i64(rlen), (tab >= 0).sum(axis=1).astype(np.int64), kw * Co)


# reset codes of the neuron loop (core/neuron_modes.py's names, as numba wants ints)
RESET_CODES = {"subtract": 0, "subtract-undecayed": 1, "zero": 2}


@njit(cache=True)
def _lif_step(Iq, bias, F, m, thc, sub, zero, owe_th, v, owe, St, Vt, record_v, undecayed):
    """One step of every neuron (see _lif_sample); returns (clipped states, largest |V|). undecayed: the
    subtract-undecayed reset's carried th (owe); the callers pass it as a constant, so the compiled loop of
    the other resets neither reads nor writes owe."""
    lo, hi = np.int64(-STATE_MAX), np.int64(STATE_MAX)
    cnt = 0
    top = 0
    for j in range(v.shape[0]):
        x = v[j]
        # sign(x) * ((|x| * m) >> 12) without a select: >> rounds toward -inf, so a negative product gets
        # 4095 added first (truncation toward zero)
        x = ((x * m + ((x >> 63) & (DECAY_ONE - 1))) >> DECAY_BITS) + ((np.int64(Iq[j]) + bias[j]) << F)
        if undecayed:
            x -= owe[j]
        y = min(max(x, lo), hi)
        cnt += y != x
        top = max(top, abs(y))
        s = np.int64(y >= thc)
        St[j] = s != 0
        v[j] = (y - s * sub) * (1 - s * zero)
        if undecayed:
            owe[j] = s * owe_th
        if record_v:
            Vt[j] = y
    return cnt, top


@njit(cache=True)
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
    v = np.full(n, v0, dtype=np.int64)
    owe = np.zeros(n, dtype=np.int64)               # subtract-undecayed: th after a spike, else 0
    cnt = 0
    top = 0
    for t in range(T):
        Vt = V_rec[t] if record_v else V_rec[0]
        if reset == 1:
            c, tp = _lif_step(I[t * step], bias, F, m, thc, sub, zero, owe_th, v, owe, S[t], Vt, record_v, True)
        else:
            c, tp = _lif_step(I[t * step], bias, F, m, thc, sub, zero, owe_th, v, owe, S[t], Vt, record_v, False)
        cnt += c
        top = max(top, tp)
    return cnt, top


@njit(parallel=True, cache=True)
def spiking_layer(x, constant, Wt, ptr, wofs, oofs, rlen, ntap, cstride, C, pool, bias, F, th, m, v0, strict,
                  reset, S, V_rec, record_v, sat, vmax, hits):
    """One spiking layer for B samples and T steps, fused per sample. x [B*T, n_in] (row b*T + t) or [B, n_in]
    when `constant` (the same input every step), channels-last for a map: binary spikes, counts or x_q.
    A conv when ptr has entries (Wt = run_weights, (ptr, ..., cstride) = conv_runs, C input channels), else
    dense; a dense layer with pool = (H, W, C, k), k > 1, sum-pools its input first (pool = (0, 0, 0, 1): none).
    Wt, bias, F, th, m, v0, strict, reset: _lif_sample's (Wt: conv rows run_weights, dense rows in the
    input's layout). S [B, T, n] bool out; V_rec [B, T, n] when record_v. sat[b], vmax[b]: sample b's
    clipped states and largest |V|; hits[b]: its nonzero inputs (dense, after the pool) or (nonzero input,
    output pixel) pairs (conv)."""
    B, T, n = S.shape
    rows = 1 if constant else T
    conv = ptr.shape[0] > 0
    ph, pw, pc, pk = pool
    for b in prange(B):
        I = np.empty((rows, n), Wt.dtype)
        nzc = np.empty(C, np.int64)                 # _conv_row's scratch
        nz = np.empty(Wt.shape[0], np.int64)        # _dense_row's
        counts = np.empty((ph // pk) * (pw // pk) * pc if pk > 1 else 0, Wt.dtype)
        rowsum = np.empty(pw * pc if pk > 1 else 0, Wt.dtype)     # _pool_row's scratch
        h = 0
        for q in range(rows):
            r = b * rows + q
            if conv:
                h += _conv_row(x, r, Wt, ptr, wofs, oofs, rlen, ntap, cstride, C, I[q], nzc)
            elif pk > 1:
                _pool_row(x, r, ph, pw, pc, pk, counts, rowsum)
                h += _dense_row(counts.reshape(1, -1), 0, Wt, I[q], nz)
            else:
                h += _dense_row(x, r, Wt, I[q], nz)
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
