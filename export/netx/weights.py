"""The synaptic input netx's Lava network computes from a file's dense weights, as integers (pure math).

netx (utils.optimize_weight_bits) rescales a dense weight matrix w to Lava's 8-bit synapse: a sign mode
(mixed, excitatory: all >= 0, inhibitory: all < 0), a scale 127/max | -128/min (mixed), 255/max or
-256/min, scale_bits b = floor(log2 scale) + (1 if mixed), the matrix w << b, weight_exp = -b and
num_weight_bits = 8 - b - n (n: the trailing zero bits all weights share, up to 8, minus 1 if mixed).
Lava's bit-accurate Dense then clips to 8 bits of its own sign mode, truncates the low
8 - num_weight_bits (+1 if mixed) bits, sums the weights of the active inputs and shifts the sum by
weight_exp (>> b, an arithmetic floor). The neuron's input is therefore a weighted sum with integer
weights W = (w << b after clip and truncation) >> b exactly when every such weight is a multiple of 2^b
(b <= 0: always); otherwise the floor of the sum is not a sum of per-weight values and saf refuses the
layer (effective_dense says why). Conv layers get no weight exponent: Lava's Conv uses the file's
integers as they are.
"""
from __future__ import annotations

import math

import numpy as np


def _scale_bits(w: np.ndarray) -> tuple:
    """(b, mixed) of netx's optimize_weight_bits for an int matrix w (not all zero)."""
    mx, mn = int(w.max()), int(w.min())
    if mx < 0:
        mixed, scale = False, -256.0 / mn
    elif mn >= 0:
        mixed, scale = False, 255.0 / mx
    else:
        mixed, scale = True, min(127.0 / mx, -128.0 / mn)
    return int(math.floor(math.log2(scale))) + int(mixed), mixed


def _trailing_zeros(w: np.ndarray) -> int:
    """netx's n: the largest k <= 8 with every weight a multiple of 2^k (0 when there is none)."""
    for k in range(8, 0, -1):
        if not np.any(w % (1 << k)):
            return k
    return 0


def netx_clip(w: np.ndarray) -> np.ndarray:
    """netx's own clip of a mixed-sign matrix beyond [-256, 254] (it warns and clips)."""
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        return np.clip(w, -256, 254)
    return w


def lava_weights(w: np.ndarray) -> tuple:
    """(the matrix Lava's Dense holds after its clip and truncation, b): what netx hands Lava is w << b with
    weight_exp -b; ValueError (a sentence) where Lava cannot hold the matrix."""
    w = netx_clip(np.asarray(w, dtype=np.int64))
    if not np.any(w):
        raise ValueError("all weights are zero (netx's weight scaling divides by the largest one)")
    b, mixed = _scale_bits(w)
    if b < 0:
        raise ValueError(f"weights up to {int(np.abs(w).max())} are beyond Lava's 8-bit synapse "
                         f"(netx would shift them by a negative amount)")
    n = _trailing_zeros(w) - int(mixed)
    bits = 8 - b - n
    held = w << b
    if held.min() >= 0:                        # Lava's own sign mode of the matrix it is given
        held = np.clip(held, 0, 255)
        cut = 8 - bits
        held = (held >> cut) << cut
    elif held.max() <= 0:
        neg = np.clip(-held, 0, 255)
        cut = 8 - bits
        held = -((neg >> cut) << cut)
    else:
        held = np.clip(held, -256, 255)
        cut = 8 - bits + 1
        held = (held >> cut) << cut
    return held, b


def effective_dense(w: np.ndarray) -> np.ndarray:
    """int64 W with netx's Lava synaptic input = W s for every binary s (module docstring); ValueError
    (a sentence) where no such W exists."""
    held, b = lava_weights(w)
    if np.any(held % (1 << b)):
        raise ValueError(f"netx's weight exponent -{b} leaves remainders: Lava floors the sum (W << {b}) s >> {b}, "
                         f"which is not a weighted sum")
    return held >> b
