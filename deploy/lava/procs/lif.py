"""SoftResetLIF: the toolchain's integer LIF neuron (by default subtractive reset, fire at equality).

fixed_pt implements export/ir.py's semantics bit-exactly; per logical step t (0-based):

    I     = a_in + bias (+ feedback received since the last update; none at t = 0)
    V     = decay(V') + (I << F)      decay(x) = sign(x) * ((|x| * (4096 - D)) >> 12)
    V     = clip(V, -(2^23 - 1), 2^23 - 1)
    s     = V >= (TH << F)            (Lava/Loihi's stock compare is strict '>': we fire at equality,
                                       the same as the stock compare against (TH << F) - 1)
    V'    = V - s * (TH << F)

with the layer's own modes (export/ir.py Layer.compare / Layer.reset; proc params `compare`, `reset`):
compare ">" fires on V > (TH << F); reset "zero" sets V' = 0 on a spike; reset "subtract-undecayed" keeps
V' = V and subtracts the spike's TH << F after the next decay: V = clip(decay(V') - owed + (I << F)).

A two-state layer (du < 4095, export/ir.py) also keeps its current register u (Lava's stock LIF u,
without its 24-bit wrap, which the certificate's current_reg bound excludes):

    u     = sign(u) * ((|u| * (4095 - du)) >> 12) + ((I - bias) << F)
    V     = decay(V') + u + (bias << F)

V' is set to v0 (the layer's initial potential, export/ir.py Layer.v0; 0 for most networks) and u to u0
(a two-state layer's initial current, Layer.u0, per neuron; 0 for most) at t = 0 of every sample, so one
compiled network streams many samples.
floating_pt runs the same recurrence in float64 on the unshifted value (v = V / 2^F) with the exact
leak (4096 - D) / 4096 and no truncation: it equals fixed_pt wherever the integer decay is exact
(dyadic leak with enough fractional bits and no saturated state, e.g. lam = 0.5, F = 6, T <= 7)
and drifts from it otherwise.

Off its update steps (see phase.py) the neuron sends no spikes, ignores a_in and accumulates fb_in
(feedback arrives up to `period` - 1 steps early when the schedule is time-multiplexed). With record
on, the `probe` OutPort (an external pipe to the host) carries one message per sample: the sample's
[T, n] spikes, np.packbits-ed.
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
from saf.core.neuron_modes import COMPARE_GE, COMPARE_GT, RESET_SUBTRACT, RESET_ZERO, NeuronMode

STATE_MAX = (1 << 23) - 1


class SoftResetLIF(AbstractProcess):
    """n soft-reset LIF neurons; a_in: forward current, fb_in: feedback current, s_out: spikes."""

    def __init__(self, *, n: int, bias: np.ndarray, threshold: int, frac_bits: int, decay: int,
                 period: int, offset: int, T: int, n_samples: int, record: bool = False,
                 probe_buffer: int = 64, name: str = None, v0: int = 0, du: int = 4095,
                 compare: str = ">=", reset: str = "subtract", u0: np.ndarray = None):
        bias = np.broadcast_to(np.asarray(bias), (int(n),))
        u0 = np.broadcast_to(np.asarray(0 if u0 is None else u0, dtype=np.int64), (int(n),))
        if not 0 <= int(decay) <= 4096:
            raise ValueError(f"decay must be a 12-bit value in [0, 4096], got {decay}")
        super().__init__(n=int(n), threshold=int(threshold), frac_bits=int(frac_bits),
                         decay=int(decay), period=int(period), offset=int(offset), T=int(T),
                         n_samples=int(n_samples), record=bool(record), name=name, v0=int(v0), du=int(du),
                         compare=str(NeuronMode(compare, reset).compare), reset=str(reset))
        if not 0 <= int(du) <= 4095:
            raise ValueError(f"du must be a 12-bit value in [0, 4095], got {du}")
        self.a_in = InPort(shape=(n,))
        self.fb_in = InPort(shape=(n,))
        self.s_out = OutPort(shape=(n,))
        self.probe = OutPort(shape=(self.probe_bytes(n, T),))
        if record:
            self.probe.flag_external_pipe(buffer_size=int(probe_buffer))
        self.v = Var(shape=(n,), init=0)
        self.u = Var(shape=(n,), init=0)
        self.u0 = Var(shape=(n,), init=u0.copy())      # U[0] (state units), set at t = 0 of every sample
        self.bias = Var(shape=(n,), init=bias.copy())

    @staticmethod
    def probe_bytes(n: int, T: int) -> int:
        return (int(n) * int(T) + 7) // 8


class _AbstractLIFModel(AbstractPhasedModel):
    a_in = fb_in = s_out = probe = v = u = u0 = bias = None
    dtype = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self.n, self.threshold, self.frac_bits = p["n"], p["threshold"], p["frac_bits"]
        self.decay, self.record = p["decay"], p["record"]
        self.v0 = int(p.get("v0", 0))                   # initial potential V'[0], state units (<< F)
        self.du = int(p.get("du", 4095))                # current decay; 4095: no current carried
        self.strict = p.get("compare", COMPARE_GE) == COMPARE_GT
        self.reset = p.get("reset", RESET_SUBTRACT)
        self._owed = np.zeros(self.n, dtype=self.dtype)  # subtract-undecayed: TH << F after a spike
        self._fb_acc = np.zeros(self.n, dtype=self.dtype)
        self._idle = np.zeros(self.n, dtype=self.s_out_dtype)
        self._rec = np.zeros((self.T, self.n), dtype=bool)

    def run_spk(self):
        a = self.a_in.recv()
        self._fb_acc += self.fb_in.recv()
        pos = self.position()
        if pos is None:
            self.s_out.send(self._idle)
            return
        _, t = pos
        current = a + self.bias
        if t > 0:
            current = current + self._fb_acc          # feedback for t = 0 is s_src[-1] = 0
        self._fb_acc[:] = 0
        if t == 0:
            self.v[:] = self.initial_v()
            self.u[:] = self.initial_u()
            self._owed[:] = 0
        if self.du != 4095:
            current = self.carry(current)
        s = self.update(current)
        self.s_out.send(s.astype(self.s_out_dtype))
        if self.record:
            self._rec[t] = s
            if t == self.T - 1:
                self.probe.send(np.packbits(self._rec))

    def initial_v(self):
        return self.v0

    def initial_u(self):
        return self.u0

    def update(self, current: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fire_and_reset(self, v: np.ndarray, th) -> np.ndarray:
        """Spikes of the clipped state v and the state kept for the next step, by the layer's modes."""
        s = v > th if self.strict else v >= th
        if self.reset == RESET_SUBTRACT:
            self.v[:] = v - s * th
        elif self.reset == RESET_ZERO:
            self.v[:] = np.where(s, 0, v)
        else:
            self.v[:] = v
            self._owed[:] = s * th
        return s

    def carry(self, current: np.ndarray) -> np.ndarray:
        """Two-state layer: update u with the synaptic part of `current`; returns what update() adds
        (<< F there): u / 2^F + bias."""
        raise NotImplementedError


@implements(proc=SoftResetLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySoftResetLIFFixed(_AbstractLIFModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    fb_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int8, precision=1)
    probe: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.uint8, precision=8)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    u0: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    dtype = np.int64
    s_out_dtype = np.int8

    def carry(self, current):
        u = np.asarray(self.u, dtype=np.int64)
        u = np.sign(u) * ((np.abs(u) * (4095 - self.du)) >> 12)         # Lava's u decay, toward zero
        u = u + ((current.astype(np.int64) - self.bias) << self.frac_bits)
        self.u[:] = u
        return u                                                        # already << F

    def update(self, current):
        th = np.int64(self.threshold) << self.frac_bits
        v = np.asarray(self.v, dtype=np.int64)
        v = np.sign(v) * ((np.abs(v) * (4096 - self.decay)) >> 12)      # truncation toward zero
        if self.du != 4095:                                             # current = u (<< F): add bias << F
            inp = current + (np.asarray(self.bias, dtype=np.int64) << self.frac_bits)
        else:
            inp = current.astype(np.int64) << self.frac_bits
        v = np.clip(v + inp - self._owed, -STATE_MAX, STATE_MAX)
        return self.fire_and_reset(v, th)


@implements(proc=SoftResetLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySoftResetLIFFloat(_AbstractLIFModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    fb_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    probe: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.uint8, precision=8)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    u0: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    dtype = np.float64
    s_out_dtype = np.float64

    def initial_v(self):
        return self.v0 / float(1 << self.frac_bits)

    def initial_u(self):
        return self.u0 / float(1 << self.frac_bits)

    def carry(self, current):
        self.u[:] = self.u * ((4095 - self.du) / 4096.0) + (current - self.bias)
        return self.u + self.bias

    def update(self, current):
        lam = (4096 - self.decay) / 4096.0
        vmax = STATE_MAX / float(1 << self.frac_bits)
        v = np.clip(lam * self.v + current - self._owed, -vmax, vmax)
        return self.fire_and_reset(v, float(self.threshold))
