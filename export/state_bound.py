"""Worst-case bounds on the integer LIF state (pure functions over integer arrays; exact ints).

For a spiking layer with per-step current |I| <= Imax (all inputs at their extremes) the state
satisfies |V[t]| <= (Imax << F) * sum_{j<t} lam^j: the leak only shrinks |V| (truncation toward
zero), and the subtractive reset only acts on V >= TH<<F > 0, leaving V' in [0, V). So the
bound at t = T, with lam = (4096 - D) / 4096 exactly, is what must stay below 2^23 - 1.
An initial potential V'[0] = v0 (Layer.v0) only decays (the reset is subtractive, so it is never
removed separately): it adds at most |v0| to the bound.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .ir import DECAY_ONE


def _row_sums(w: np.ndarray) -> tuple:
    rows = np.asarray(w, dtype=np.int64).reshape(np.shape(w)[0], -1)
    return np.where(rows > 0, rows, 0).sum(1), np.where(rows < 0, rows, 0).sum(1)


def layer_current_bound(weight, bias, fb_weights=(), in_max: int = 1, in_signed: bool = False) -> int:
    """max over neurons of |W s_in + B + sum W_fb s_fb|, for inputs in [0, in_max] (spikes: in_max=1;
    or [-in_max, in_max] when in_signed) and feedback spikes in {0, 1}. Per neuron the current lies
    in [in_max * sum(w < 0) + B, in_max * sum(w > 0) + B] (plus the feedback's sums), so the bound
    is the larger end, per neuron (a conv channel's bias covers all its positions)."""
    w = np.asarray(weight)
    if w.size == 0:
        return 0
    pos, neg = _row_sums(w)
    if in_signed:
        pos, neg = pos - neg, neg - pos                        # sum |w| both ways
    pos, neg = pos * int(in_max), neg * int(in_max)
    for f in fb_weights:
        fp, fn = _row_sums(f)
        if len(fp) != len(pos):                                # conv: per output channel
            raise ValueError("feedback weight must have one row per output channel of the layer")
        pos, neg = pos + fp, neg + fn
    b = np.asarray(bias, dtype=np.int64).reshape(-1)
    b = np.broadcast_to(b, pos.shape) if b.size in (1, pos.size) else np.zeros_like(pos)
    return int(max(int((pos + b).max()), int((-(neg + b)).max()), 0))


def geometric_sum(decay: int, T: int) -> Fraction:
    """sum_{j=0}^{T-1} lam^j for lam = (4096 - decay) / 4096, exactly."""
    lam = Fraction(DECAY_ONE - int(decay), DECAY_ONE)
    return sum((lam ** j for j in range(int(T))), Fraction(0))


def state_bound(current_bound: int, frac_bits: int, decay: int, T: int, v0: int = 0) -> int:
    """Worst-case |V| over T steps, rounded up to an integer (v0: the initial potential)."""
    v = Fraction(int(current_bound) << int(frac_bits)) * geometric_sum(decay, T) + abs(int(v0))
    return -((-v.numerator) // v.denominator)
