"""Worst-case bounds on the integer LIF state (pure functions over integer arrays; exact ints).

For a spiking layer with per-step current |I| <= Imax (all inputs at their extremes) the state
satisfies |V[t]| <= (Imax << F) * sum_{j<t} lam^j: the leak only shrinks |V| (truncation toward
zero), and the subtractive reset only acts on V >= TH<<F > 0, leaving V' in [0, V). So the
bound at t = T, with lam = (4096 - D) / 4096 exactly, is what must stay below 2^23 - 1.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .ir import DECAY_ONE


def abs_row_sum_max(weight: np.ndarray) -> int:
    """max over output units (first axis) of sum |w| (conv: over C_in*kh*kw), as a Python int."""
    w = np.asarray(weight)
    if w.size == 0:
        return 0
    rows = np.abs(w.reshape(w.shape[0], -1).astype(np.int64))
    return int(rows.sum(axis=1).max())


def layer_current_bound(weight, bias, fb_weights=(), in_max: int = 1) -> int:
    """max |W s_in + B + sum W_fb s_fb| with |s_in| <= in_max and feedback spikes in {0, 1}."""
    b = int(np.abs(np.asarray(bias, dtype=np.int64)).max(initial=0))
    return abs_row_sum_max(weight) * int(in_max) + b + sum(abs_row_sum_max(w) for w in fb_weights)


def geometric_sum(decay: int, T: int) -> Fraction:
    """sum_{j=0}^{T-1} lam^j for lam = (4096 - decay) / 4096, exactly."""
    lam = Fraction(DECAY_ONE - int(decay), DECAY_ONE)
    return sum((lam ** j for j in range(int(T))), Fraction(0))


def state_bound(current_bound: int, frac_bits: int, decay: int, T: int) -> int:
    """Worst-case |V| over T steps, rounded up to an integer."""
    v = Fraction(int(current_bound) << int(frac_bits)) * geometric_sum(decay, T)
    return -((-v.numerator) // v.denominator)
