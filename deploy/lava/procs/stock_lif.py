"""PySoftResetLifBitAcc: Lava's own bit-accurate LIF model with the toolchain's reset and compare.

A ProcessModel (no Process of its own) for Lava's stock `lava.proc.lif.process.LIFReset`. It
subclasses Lava 0.10.0's `lava.proc.lif.models.PyLifResetModelBitAcc` and overrides exactly two
methods, the two things a Loihi 2 microcode neuron changes for our network (DESIGN.md sec. 5):

    spiking_activation   v >= (vth << 6)      (stock: v > (vth << 6))
    reset_voltage        v -= (vth << 6)      (stock: v = 0)

Everything else is Lava's code and runs unchanged: the per-sample state reset every
`reset_interval` steps, bias = bias_mant << bias_exp, the 12-bit truncating decays of u and v,
u = trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6) wrapping at 24 bits, and v clipped to
+-(2^23 - 1). The backend (deploy/lava/stock.py) selects this model for LIFReset through
`exception_proc_model_map`.
"""
from __future__ import annotations

import numpy as np
from lava.proc.lif.models import PyLifResetModelBitAcc

OVERRIDDEN = ("spiking_activation", "reset_voltage")


class PySoftResetLifBitAcc(PyLifResetModelBitAcc):
    """Lava's bit-accurate LIFReset model; fires at equality and resets by subtraction."""

    def spiking_activation(self):
        return self.v >= self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= self.effective_vth
