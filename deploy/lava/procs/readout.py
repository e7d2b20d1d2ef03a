"""Integrator: the non-spiking readout (no threshold, no clip), leaking as the model was trained.

Per logical step t (export/ir.py): R = decay_r(0 if t == 0 else R) + ((a_in + bias) << F_r) with
decay_r(x) = sign(x) * ((|x| * (4096 - D_r)) >> 12); D_r = 0, F_r = 0 for a non-leaking readout
(R = R + a_in + bias). After t = T - 1 the `probe` OutPort (an external pipe to the host) carries
the sample's R[T], the integer logits. With first_spike (FP's readout, export/ir.py) the unit
instead latches R = T - t at the first logical step t (0-based) where a_in + bias > 0 and holds it
(R = T + 1 - the 1-based first step; 0 if it never comes). floating_pt runs R = lam_r R + (a_in + bias) 2^F_r in float64
with the exact leak (4096 - D_r) / 4096 (equal to fixed_pt where the decay is exact). Same schedule
as SoftResetLIF (see phase.py).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from saf.deploy.lava.procs.phase import AbstractPhasedModel


class Integrator(AbstractProcess):
    """n integrating readout units; a_in: current; probe: R[T] of every sample (external pipe)."""

    def __init__(self, *, n: int, bias: np.ndarray, period: int, offset: int, T: int,
                 n_samples: int, probe_buffer: int = 64, decay: int = 0, shift: int = 0,
                 name: str = None, first_spike: bool = False):
        if not 0 <= int(decay) < 4096 or int(shift) < 0:
            raise ValueError(f"readout decay must be in [0, 4095] and shift >= 0, got {decay}, {shift}")
        super().__init__(n=int(n), period=int(period), offset=int(offset), T=int(T),
                         n_samples=int(n_samples), decay=int(decay), shift=int(shift), name=name,
                         first_spike=bool(first_spike))
        self.a_in = InPort(shape=(n,))
        self.probe = OutPort(shape=(n,))
        self.probe.flag_external_pipe(buffer_size=int(probe_buffer))
        self.v = Var(shape=(n,), init=0)
        self.bias = Var(shape=(n,), init=np.broadcast_to(np.asarray(bias), (int(n),)).copy())


class _AbstractIntegratorModel(AbstractPhasedModel):
    a_in = probe = v = bias = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.decay, self.shift = self.proc_params["decay"], self.proc_params["shift"]
        self.first_spike = bool(self.proc_params.get("first_spike", False))

    def leak(self, v):
        raise NotImplementedError

    def run_spk(self):
        a = self.a_in.recv()
        pos = self.position()
        if pos is None:
            return
        _, t = pos
        if t == 0:
            self.v[:] = 0
        if self.first_spike:                  # latch T - t on the first step with a positive drive
            self.v[:] = np.where((self.v == 0) & (a + self.bias > 0), self.T - t, self.v)
        else:
            self.v[:] = self.leak(self.v) + (a + self.bias) * (1 << self.shift)
        if t == self.T - 1:
            self.probe.send(self.v.copy())


@implements(proc=Integrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntegratorFixed(_AbstractIntegratorModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    probe: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def leak(self, v):
        """sign(v) * ((|v| * (4096 - D_r)) >> 12): Loihi's truncating 12-bit decay."""
        if not self.decay:
            return v
        mag = (np.abs(v) * (4096 - self.decay)) >> 12
        return np.where(v < 0, -mag, mag)


@implements(proc=Integrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyIntegratorFloat(_AbstractIntegratorModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    probe: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def leak(self, v):
        return v * ((4096 - self.decay) / 4096)
