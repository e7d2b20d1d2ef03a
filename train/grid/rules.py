"""The integer grid's rules, one definition each, for numpy arrays and torch tensors alike.

The export quantizer (export/quantize.py), the IR (export/ir.py) and the grid-trained forward
(train/grid/forward.py) all call these, so the network a run trains on and the one export writes round,
decay, saturate and quantize their input by the same code. No torch import here (the IR stays numpy-only):
a torch tensor is recognised by its type and handled with its own ops.
"""
from __future__ import annotations

import numpy as np

STATE_BITS = 24
STATE_MAX = (1 << (STATE_BITS - 1)) - 1          # the 24-bit saturating state: |V| <= 2^23 - 1
DECAY_BITS = 12
DECAY_ONE = 1 << DECAY_BITS                       # decays are (4096 - D) / 4096


def _torch(a) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def rint(a):
    """Round half to even (np.rint and torch.round agree on it), same type out."""
    return a.round() if _torch(a) else np.rint(a)


def round_to(a, step: int):
    """a rounded to the nearest multiple of `step` (half to even in units of step), float values."""
    return rint(a / step) * step


def trunc_decay_int(x, decay: int):
    """Loihi's decay on int64 values: x * (4096 - D) / 4096 truncated toward zero (sign(x) (|x| m >> 12))."""
    q = (abs(x) * (DECAY_ONE - int(decay))) >> DECAY_BITS
    return q - 2 * q * (x < 0)


def saturate(v):
    """The 24-bit state's saturation: clip to [-(2^23 - 1), 2^23 - 1]."""
    return v.clamp(-STATE_MAX, STATE_MAX) if _torch(v) else np.clip(v, -STATE_MAX, STATE_MAX)


def input_range(bits: int, signed: bool) -> tuple:
    """(lowest, highest) integer input x_q of `bits` bits."""
    bits = int(bits)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def quantize_input_values(x, scale: float, bits: int, signed: bool):
    """x_q = clip(rint(x * scale)) in float64 (numpy float64 array or torch float64 tensor; integer values)."""
    lo, hi = input_range(bits, signed)
    if _torch(x):
        return (x.double() * float(scale)).round().clamp(lo, hi)
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * scale), lo, hi)
