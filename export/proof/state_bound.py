"""Worst-case bounds on the integer LIF state (pure functions over integer arrays; exact ints).

For a spiking layer with per-step current |I| <= Imax (all inputs at their extremes) the state
satisfies |V[t]| <= (Imax << F) * sum_{j<t} lam^j: the leak only shrinks |V| (truncation toward
zero), and the subtractive reset only acts on V >= TH<<F > 0, leaving V' in [0, V). So the
bound at t = T, with lam = (4096 - D) / 4096 exactly, is what must stay below 2^23 - 1.
An initial potential V'[0] = v0 (Layer.v0) only decays (the reset is subtractive, so it is never
removed separately): it adds at most |v0| to the bound.
Reset modes (Layer.reset): "zero" leaves V' = 0 in [0, V) too, so the same bound holds. "subtract-undecayed"
keeps V' = V and subtracts TH<<F after the next decay: on a spike V >= TH<<F > 0 and
decay(V) - TH<<F lies in [-TH<<F, decay(V)], so |V[t]| <= max(lam |V[t-1]|, TH<<F) + (Imax << F), and by
induction |V[t]| <= (Imax << F) sum_{j<t} lam^j + TH<<F (+ |v0|): `owed` = TH<<F (owed_subtraction).

Two-state layers (Layer.du < 4095, export/ir.py): the current register U[t] = trunc0(r U[t-1]) +
(W s_in + W_fb s_src) << F with r = (4095 - du) / 4096 obeys |U[t]| <= (A << F) sum_{j<t} r^j
(A: the worst |W s_in + W_fb s_src|, no bias; truncation only shrinks |U|), and V, fed U + (B << F)
each step, obeys |V[t]| <= (U_max + (|B| << F)) sum_{j<t} lam^j + |v0|.
An initial current U[0] = u0 (Layer.u0) enters U as its decayed copy d[t], which lies between 0 and u0
(trunc0 of r^t u0, r in [0, 1)), so per neuron |d[t] + (B << F)| <= max(|u0 + (B << F)|, |B << F|)
(initial_drive_max) replaces |B| << F above: for the Synaptic mapping (B = c, u0 = -(c << F)) that is
|c| << F, the bias the float current settles to. The register U alone gains at most max |u0|.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from saf.core.neuron_modes import RESET_SUBTRACT_UNDECAYED

from saf.export.ir import DECAY_ONE, DU_NONE


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


def owed_subtraction(layer) -> int:
    """TH<<F for a layer whose reset is subtract-undecayed (the subtraction it still owes after a decay, which
    adds to its state bound), else 0."""
    return int(layer.threshold) << int(layer.frac_bits) if layer.reset == RESET_SUBTRACT_UNDECAYED else 0


def state_bound(current_bound: int, frac_bits: int, decay: int, T: int, v0: int = 0, owed: int = 0) -> int:
    """Worst-case |V| over T steps, rounded up to an integer (v0: the initial potential; owed: see
    owed_subtraction)."""
    v = Fraction(int(current_bound) << int(frac_bits)) * geometric_sum(decay, T) + abs(int(v0)) + int(owed)
    return -((-v.numerator) // v.denominator)


def _ceil(v: Fraction) -> int:
    return -((-v.numerator) // v.denominator)


def decay_geometric_sum(m: int, T: int) -> Fraction:
    """sum_{j=0}^{T-1} (m / 4096)^j in closed form, exactly (m: the decay's multiplier, 0..4096)."""
    r = Fraction(int(m), DECAY_ONE)
    return Fraction(int(T)) if r == 1 else (1 - r ** int(T)) / (1 - r)


def current_state_bound(syn_bound: int, frac_bits: int, du: int, T: int) -> int:
    """Worst-case |U| of a current register with decay du over T steps (du = 4095: one step's input)."""
    return _ceil(Fraction(int(syn_bound) << int(frac_bits)) * decay_geometric_sum(DU_NONE - int(du), T))


def initial_current_max(layer) -> int:
    """max |U[0]| of a layer (Layer.u0, state units; 0 without one)."""
    return int(np.abs(layer.full_initial_current()).max(initial=0))


def initial_drive_max(bias_full, u0_full, frac_bits: int) -> int:
    """max over neurons of max(|u0 + (B << F)|, |B << F|): the largest |decayed initial current + bias| that V
    receives besides the synaptic part of U (module docstring). Arrays per neuron, state units for u0."""
    b = np.asarray(bias_full, dtype=np.int64) << int(frac_bits)
    u = np.asarray(u0_full, dtype=np.int64)
    return int(max(np.abs(b + u).max(initial=0), np.abs(b).max(initial=0)))


def two_state_bound(syn_bound: int, bias_max: int, frac_bits: int, du: int, decay: int, T: int,
                    carried: int = 0, drive: int = None) -> int:
    """Worst-case |V| of a two-state layer: fed by U (current_state_bound) plus |B| << F each step, or, with an
    initial current, plus `drive` (initial_drive_max) instead of |B| << F; plus `carried` = |v0| + the owed
    subtraction (owed_subtraction), what V holds besides its input."""
    extra = (abs(int(bias_max)) << int(frac_bits)) if drive is None else int(drive)
    u = current_state_bound(syn_bound, frac_bits, du, T) + extra
    return _ceil(Fraction(u) * decay_geometric_sum(DECAY_ONE - int(decay), T)) + int(carried)
