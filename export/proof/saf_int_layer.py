"""One spiking layer of saf-int stepped in time: the elementwise part of the SAF form's exact recurrences
(saf_int.py's docstring derives them), vectorized over a batch of samples and the layer's neurons.

The layer is handed its accumulated synaptic input S U_syn[t] (W a_in[t] + the feedback, from
saf_int_linear) and keeps, scaled by S: its accumulation A = S a[t-1], the reset charge Z (reset to zero),
the current's accumulation X (two-state), the initial current's P and Y, never a potential.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Optional

import numpy as np

from saf.export.ir import DECAY_ONE, DU_NONE
from saf.core.neuron_modes import COMPARE_GT, RESET_SUBTRACT_UNDECAYED, RESET_ZERO


@dataclass(frozen=True)
class Arith:
    """The exact arithmetic of one run: lam = p / q, the scale S, T, the v0 factor E, the largest frac_bits,
    and the array dtype (int32 or int64, or object for Python ints)."""
    p: int
    q: int
    S: int
    T: int
    E: int
    fmax: int
    dt: object


def current_ratio(layer) -> tuple:
    """A two-state layer's current decay (4095 - du) / 4096 = pc / qc in lowest terms."""
    m = DU_NONE - int(layer.du)
    g = gcd(m, DECAY_ONE)
    return m // g, DECAY_ONE // g


def exact_div(num, d: int, what: str, t: int):
    """num // d, which the scale makes exact (raises otherwise: a bug)."""
    if num.dtype != object and d & (d - 1) == 0:             # a power of two: a shift, the low bits 0
        if num.size and int(np.bitwise_or.reduce(num, axis=None)) & (d - 1):
            raise ArithmeticError(f"{what} at t={t + 1} (bug)")
        return num >> (d.bit_length() - 1)
    out = num // d
    if np.any(out * d != num):
        raise ArithmeticError(f"{what} at t={t + 1} (bug)")
    return out


def v0_term(layer, t: int, ar: Arith) -> int:
    """S lam^t v0 / 2^F at step t (1-based), an exact Python int."""
    v0 = int(layer.v0)
    if not v0:
        return 0
    return ar.q ** (ar.T - t) * ar.p ** t * (v0 << (ar.fmax - int(layer.frac_bits)))


def initial_p(layer, S: int, dt):
    """S P[0] = S u0 / 2^F per neuron (an exact integer by saf_int._u0_factor), or None without an initial
    current."""
    if not layer.has_initial_current:
        return None
    num = [int(v) * S for v in layer.full_initial_current()]
    f = int(layer.frac_bits)
    if any(v % (1 << f) for v in num):
        raise ArithmeticError(f"{layer.name}: S u0 / 2^F is not an integer (bug)")
    return np.array([v >> f for v in num], dtype=dt)


class LayerState:
    """The state of one spiking layer for a batch of b samples; step() advances it by one time step."""

    def __init__(self, layer, b: int, ar: Arith):
        self.layer, self.ar = layer, ar
        shape = (b, layer.n_out)
        self.A = np.zeros(shape, dtype=ar.dt)                # S a[t-1]
        self.Z = np.zeros(shape, dtype=ar.dt) if layer.reset == RESET_ZERO else None   # S Z[t] (reset to zero)
        self.X = np.zeros(shape, dtype=ar.dt) if layer.two_state else None          # S X[t-1] (two-state)
        self.P = initial_p(layer, ar.S, ar.dt)               # S P[t-1], S Y[t-1]: the initial current
        self.Y = np.zeros(layer.n_out, dtype=ar.dt)
        self.U_old = self.H_old = None                       # S U[t-1], s[t-1] (reset to zero)
        self.lam_a = self.A                                  # S lam a[t-1] of the last step
        self.u = None                                        # S u[t] of the last step
        bias = layer.full_bias()
        self.bias = bias.astype(ar.dt)
        self.has_bias = bool(np.any(bias))
        self.ratio = current_ratio(layer) if layer.two_state else None

    def _input(self, t: int, su: np.ndarray, C: int) -> np.ndarray:
        """S U[t] from S U_syn[t]: the current's kernel, the initial current, the bias, v0."""
        ar, name = self.ar, self.layer.name
        if self.ratio is not None:                           # S X[t] = alpha S X[t-1] + S U_syn[t]
            pc, qc = self.ratio
            self.X = su = exact_div(pc * self.X, qc, f"{name}: inexact current decay", t) + su
        if self.P is not None:                               # S P[t] = alpha S P[t-1]; S Y[t] = lam S Y[t-1] + S P[t]
            pc, qc = self.ratio
            self.P = exact_div(pc * self.P, qc, f"{name}: inexact initial current", t)
            self.Y = exact_div(ar.p * self.Y, ar.q, f"{name}: inexact initial current", t) + self.P
            su = su + self.Y
        su = su + self.bias * C if self.has_bias else su
        v0t = v0_term(self.layer, t + 1, ar)
        if v0t:
            su = su + (v0t if ar.dt is object else ar.dt(v0t))
        return su

    def step(self, t: int, su_syn: np.ndarray, C: int, into: Optional[np.ndarray] = None) -> np.ndarray:
        """Advance to step t (0-based) given S U_syn[t] and C = S c[t]; returns the spikes H [b, n_out].
        into: where to write the new accumulation S a[t] ([b, n_out] of the run's dtype; default a new array)."""
        layer, ar = self.layer, self.ar
        SU = self._input(t, su_syn, C)
        lam_a = exact_div(self.A if ar.p == 1 else ar.p * self.A, ar.q, f"{layer.name}: inexact leak", t)
        th = int(layer.threshold)
        if layer.reset == RESET_ZERO:                        # S Z[t] = lam (S Z[t-1] + s[t-1] (S U[t-1] - S Z[t-1]))
            if t:
                self.Z = exact_div(ar.p * np.where(self.H_old, self.U_old, self.Z), ar.q,
                                   f"{layer.name}: inexact reset charge", t)
            given = self.Z                                   # S (U - u): the charge the resets dropped
        elif layer.reset == RESET_SUBTRACT_UNDECAYED:
            given = th * self.A                              # S TH a[t-1]
        else:
            given = th * lam_a                               # S TH lam a[t-1]
        self.u = SU - given                                  # S u[t]; fire on S (u - TH) > 0 or >= 0
        th_s = th * ar.S if ar.dt is object else ar.dt(th * ar.S)
        H = np.asarray(self.u > th_s if layer.compare == COMPARE_GT else self.u >= th_s, dtype=bool)
        if layer.reset == RESET_ZERO:
            self.U_old, self.H_old = SU, H
        if ar.dt is object:
            self.lam_a, self.A = lam_a, lam_a + H.astype(object) * ar.S
        else:
            self.lam_a, self.A = lam_a, np.add(lam_a, np.multiply(H, ar.S, dtype=ar.dt), out=into)
        return H

    def spike_count(self) -> np.ndarray:
        """The last step's spike s[t] = a[t] - lam a[t-1], recovered from the accumulations (exactly 0 or 1)."""
        sN = self.A - self.lam_a
        s_bin = sN // self.ar.S
        if np.any(s_bin * self.ar.S != sN) or np.any((s_bin != 0) & (s_bin != 1)):
            raise ArithmeticError("accumulation does not give a binary spike (bug)")
        return s_bin.astype(np.int64)

    def potential(self) -> tuple:
        """The last step's u in LIF state units, (S u) 2^F / S floored, int64; and whether it was exact."""
        u = self.u if self.ar.dt is object else self.u.astype(np.int64)
        num = u * (1 << int(self.layer.frac_bits))
        val = num // self.ar.S
        return np.asarray(val, dtype=np.int64), not np.any(val * self.ar.S != num)
