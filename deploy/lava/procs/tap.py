"""SpikeTap: an observer that ships a population's spikes to the host, one message per sample.

Used by the stock-model backend (deploy/lava/stock.py), whose neurons are Lava's own LIFReset and
have no probe of their own (Lava's `io.sink.RingBuffer` would do, but `Var.get` reads it one
element per message). The tap only reads s_out; it sends nothing back into the network. On the
shared schedule (phase.py) it records logical steps t = 0..T-1 of each sample and, after t = T-1,
sends the sample's [T, *shape] spikes np.packbits-ed (C order of `shape`) through `probe`.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from saf.deploy.lava.procs.phase import AbstractPhasedModel


class SpikeTap(AbstractProcess):
    """Records binary spikes arriving at s_in; probe: one packed [T, *shape] message per sample."""

    def __init__(self, *, shape: tuple, offset: int, T: int, n_samples: int, probe_buffer: int = 64,
                 name: str = None):
        shape = tuple(int(d) for d in shape)
        super().__init__(shape=shape, period=1, offset=int(offset), T=int(T), n_samples=int(n_samples),
                         name=name)
        self.s_in = InPort(shape=shape)
        self.probe = OutPort(shape=(self.probe_bytes(shape, T),))
        self.probe.flag_external_pipe(buffer_size=int(probe_buffer))

    @staticmethod
    def probe_bytes(shape: tuple, T: int) -> int:
        return (int(np.prod(shape)) * int(T) + 7) // 8


@implements(proc=SpikeTap, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeTapFixed(AbstractPhasedModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    probe: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.uint8, precision=8)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._rec = np.zeros((self.T, *self.proc_params["shape"]), dtype=bool)

    def run_spk(self):
        s = self.s_in.recv()
        pos = self.position()
        if pos is None:
            return
        t = pos[1]
        self._rec[t] = s != 0
        if t == self.T - 1:
            self.probe.send(np.packbits(self._rec))
