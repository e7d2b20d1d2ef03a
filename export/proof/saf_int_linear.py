"""saf-int's linear maps: a layer's integer weight W applied to a batch of exact integer accumulations, exactly.

Float64 BLAS is exact on integers as long as every partial sum (and every product) is an integer of magnitude
below 2^53: then no addition rounds, in whatever order the library sums. For y = W a with |a| <= a_max, every
partial sum of row j is at most sum_k |W_jk| |a_k| <= R a_max, R = max_j sum_k |W_jk| (the largest row L1 norm).
So the matmul runs in float64 when R a_max < 2^53, and in float32 (twice as fast, a 24-bit significand)
when R a_max < 2^24. Otherwise the accumulations are split into base-2^m limbs,
a = sum_i L_i 2^(m i) with 0 <= L_i < 2^m (the top limb signed, |L_top| <= 2^m), m the largest with
R 2^m <= 2^53: each W L_i is again exact in float64, and y = sum_i (W L_i) 2^(m i) is recombined in int64 (the
caller's overflow bound, saf_int._bounds, covers y) or in Python ints (object arrays: the non-dyadic form).
a_max is the caller's bound derived from the network (saf_int._bounds); the data is checked against it.

A convolution is the same matmul on the im2col rows (strided windows of the zero-padded input). A sum-pooled
input (Layer.in_pool = k) is pooled first in exact integers (pooling is linear: the accumulation of the
pooled input), so the bound is k^2 a_max.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

FLOAT64_EXACT = 1 << 53
FLOAT32_EXACT = 1 << 24
IM2COL_BYTES = 1 << 25          # im2col rows are built this many bytes at a time


def _conv_cols(a: np.ndarray, in_shape: tuple, kh: int, kw: int, stride: int, pad: int, dtype) -> np.ndarray:
    """a [R, C*H*W] (any integer or float dtype) -> im2col rows [R*Ho*Wo, kh*kw*C] in dtype (padding reads 0).
    The input is laid out channels-last once, so each window row (kw pixels times C channels) is one contiguous
    run: the rows are a strided view of it, copied once by the reshape."""
    c, h, w = (int(d) for d in in_shape)
    r = a.shape[0]
    x = np.zeros((r, h + 2 * pad, w + 2 * pad, c), dtype=dtype)
    x[:, pad:pad + h, pad:pad + w] = a.reshape(r, c, h, w).transpose(0, 2, 3, 1)
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    sr, sh, sw, sc = x.strides
    view = as_strided(x, (r, ho, wo, kh, kw * c), (sr, sh * stride, sw * stride, sh, sc), writeable=False)
    return view.reshape(r * ho * wo, kh * kw * c)


def _limbs(a: np.ndarray, a_max: int, m: int) -> list:
    """a (int64 or object) = sum_i L_i 2^(m i): float64 limbs, |L_i| <= 2^m (module docstring)."""
    n = max(1, -(-int(a_max).bit_length() // m))
    if n == 1:
        return [a if a.dtype != object else a.astype(np.float64)]
    out, rest, base = [], a, 1 << m
    for _ in range(n - 1):
        out.append((rest % base).astype(np.float64))                 # in [0, 2^m)
        rest = rest // base
    out.append(rest.astype(np.float64))                              # in [-2^m, 2^m)
    return out


class ExactLinear:
    """W (dense [Co, K] or conv [Co, C, kh, kw]) on flattened accumulations [R, n_in] -> [R, n_out], exact."""

    def __init__(self, kind: str, weight: np.ndarray, in_shape: tuple, stride: int = 1, pad: int = 0):
        w = np.asarray(weight, dtype=np.int64)
        self.kind, self.in_shape, self.stride, self.pad = kind, tuple(in_shape), int(stride), int(pad)
        self.row_abs = int(np.abs(w.reshape(w.shape[0], -1)).sum(1).max(initial=0))
        if self.row_abs >= FLOAT64_EXACT >> 1:
            raise ArithmeticError(f"a weight row's L1 norm {self.row_abs} leaves no exact float64 limb")
        self.m = 53 - self.row_abs.bit_length()                      # R 2^m <= 2^53
        self.shape = w.shape
        flat = w.transpose(0, 2, 3, 1) if kind == "conv" else w      # conv: (kh, kw, C) as _conv_cols lays it
        self.w64 = flat.reshape(w.shape[0], -1).astype(np.float64)   # Co, K (every entry < 2^53: exact)
        self.w32 = self.w64.astype(np.float32) if self.row_abs < FLOAT32_EXACT else None

    def limb_count(self, a_max: int) -> int:
        """How many float64 matmuls an input bounded by a_max takes (1: R a_max < 2^53; 0: one float32)."""
        if self.w32 is not None and self.row_abs * int(a_max) < FLOAT32_EXACT:
            return 0
        return max(1, -(-int(a_max).bit_length() // self.m))

    def _float(self, x: np.ndarray, wk: np.ndarray) -> np.ndarray:
        """One exact float product W x in wk's dtype, x [R, n_in] (integers) -> [R, n_out] (integers)."""
        if self.kind != "conv":
            return x.astype(wk.dtype, copy=False) @ wk.T
        _, _, kh, kw = self.shape
        per_row = max(1, IM2COL_BYTES // (wk.itemsize * max(1, int(np.prod(self.in_shape))) * kh * kw))
        outs = []
        for s in range(0, x.shape[0], per_row):
            r = min(per_row, x.shape[0] - s)
            y = _conv_cols(x[s:s + per_row], self.in_shape, kh, kw, self.stride, self.pad, wk.dtype) @ wk.T
            outs.append(y.reshape(r, -1, wk.shape[0]).transpose(0, 2, 1).reshape(r, -1))   # the [Co, H, W] order
        return np.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]

    def __call__(self, a: np.ndarray, a_max: int) -> np.ndarray:
        """W a for |a| <= a_max (checked), in a's dtype (int32, int64 or object)."""
        a_max = int(a_max)
        if a.size and max(int(a.max()), -int(a.min())) > a_max:
            raise ArithmeticError(f"an accumulation exceeds its derived bound {a_max} (bug)")
        if a.dtype != object and self.row_abs * a_max > np.iinfo(a.dtype).max:
            raise ArithmeticError(f"W a may reach {self.row_abs * a_max}, past {a.dtype}: needs wider ints (bug)")
        if self.limb_count(a_max) == 0:
            y = self._float(a if a.dtype != object else a.astype(np.int64), self.w32)
            return y.astype(a.dtype) if a.dtype != object else y.astype(np.int64).astype(object)
        limbs = _limbs(a, a_max, self.m)
        y = self._float(limbs[0], self.w64)
        if len(limbs) == 1:
            return y.astype(a.dtype) if a.dtype != object else y.astype(np.int64).astype(object)
        out = y.astype(np.int64).astype(a.dtype)
        for i, limb in enumerate(limbs[1:], start=1):
            part = self._float(limb, self.w64).astype(np.int64)
            out = out + (part.astype(object) << (self.m * i) if a.dtype == object else part << (self.m * i))
        return out


def sum_pool(a: np.ndarray, in_shape: tuple, k: int) -> np.ndarray:
    """a [R, C*H*W] summed over k x k blocks -> [R, C*(H/k)*(W/k)] (exact integers): the k neighbours along W
    first (adjacent in memory), then the k rows of the halved image, 2 (k - 1) adds in all."""
    c, h, w = (int(d) for d in in_shape)
    if h % k or w % k:
        raise ValueError(f"sum pool {k}x{k} needs H and W divisible by {k}, got {h}x{w}")
    x = a.reshape(-1, k)                                         # k neighbours along W
    cols = x[:, 0] + x[:, 1] if k > 1 else x[:, 0].copy()
    for j in range(2, k):
        cols += x[:, j]
    y = cols.reshape(-1, k, w // k)                              # k rows of the W-summed image
    out = y[:, 0] + y[:, 1] if k > 1 else y[:, 0].copy()
    for i in range(2, k):
        out += y[:, i]
    return out.reshape(a.shape[0], -1)


class PooledLinear:
    """A layer's k x k sum pool of its input (Layer.in_pool) followed by its ExactLinear."""

    def __init__(self, layer, lin: ExactLinear):
        self.lin, self.in_shape, self.k = lin, tuple(layer.in_shape), int(layer.in_pool)
        self.row_abs = lin.row_abs * self.k ** 2

    def limb_count(self, a_max: int) -> int:
        return self.lin.limb_count(int(a_max) * self.k ** 2)

    def __call__(self, a: np.ndarray, a_max: int) -> np.ndarray:
        return self.lin(sum_pool(a, self.in_shape, self.k), int(a_max) * self.k ** 2)


def layer_linear(layer):
    """The exact linear map of a layer (spiking: its dense or conv weight; the readout: dense), pooled if it pools."""
    kind = layer.kind if layer.spiking else "dense"
    lin = ExactLinear(kind, layer.weight, layer.syn_in_shape, layer.stride, layer.padding)
    return PooledLinear(layer, lin) if int(layer.in_pool) > 1 else lin
