"""Lava's own bit-accurate LIF model, with the layer's reset and compare where Lava's differ.

ProcessModels (no Process of their own) for Lava's stock `lava.proc.lif.process.LIFReset`. Lava 0.10.0's
`lava.proc.lif.models.PyLifResetModelBitAcc` fires on v > (vth << 6) and resets v = 0: a layer whose modes
(export/ir.py Layer.compare / Layer.reset) are exactly that, zero + ">", runs it with NO override. For the
others it can hold, a subclass overrides only what differs, the two things a Loihi 2 microcode neuron
changes (docs/design.md#lavas-lif-registers):

    spiking_activation   v >= (vth << 6)      (compare ">=";  stock: v > (vth << 6))
    reset_voltage        v -= (vth << 6)      (reset "subtract";  stock: v = 0)

Everything else is Lava's code and runs unchanged: the per-sample state reset every
`reset_interval` steps, bias = bias_mant << bias_exp, the 12-bit truncating decays of u and v,
u = trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6) wrapping at 24 bits, and v clipped to
+-(2^23 - 1). "subtract-undecayed" (the subtraction applied after the next decay) needs a state the stock
model does not keep: the stock backend refuses it (deploy/lava/stock.py) and lava-own runs it. The backend
selects these models through `exception_proc_model_map` (MODELS, per layer).
"""
from __future__ import annotations

import numpy as np
from lava.proc.lif.models import PyLifResetModelBitAcc

OVERRIDDEN = ("spiking_activation", "reset_voltage")


class PySoftResetLifBitAcc(PyLifResetModelBitAcc):
    """Lava's bit-accurate LIFReset model; fires at equality and resets by subtraction (the default modes)."""

    def spiking_activation(self):
        return self.v >= self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= self.effective_vth


class PyStrictSoftResetLifBitAcc(PyLifResetModelBitAcc):
    """Lava's bit-accurate LIFReset model with its strict compare; resets by subtraction (subtract + >)."""

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= self.effective_vth


class PyGeLifResetBitAcc(PyLifResetModelBitAcc):
    """Lava's bit-accurate LIFReset model with its reset to 0; fires at equality (zero + >=)."""

    def spiking_activation(self):
        return self.v >= self.effective_vth


# (compare, reset) -> (model, the methods it overrides); zero + ">" is Lava's model as it is
MODELS = {(">=", "subtract"): (PySoftResetLifBitAcc, OVERRIDDEN),
          (">", "subtract"): (PyStrictSoftResetLifBitAcc, ("reset_voltage",)),
          (">=", "zero"): (PyGeLifResetBitAcc, ("spiking_activation",)),
          (">", "zero"): (PyLifResetModelBitAcc, ())}
