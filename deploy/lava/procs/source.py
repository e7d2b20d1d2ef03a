"""GradedSource: streams the quantized inputs x_q as graded spikes (integer payloads).

data [n_samples * T, n] (row n*T + t: sample n's input frame at logical step t; a constant image is
its frame repeated) is held inside the process; frame (n, t) is sent on the first Lava step of
logical step t of sample n (step 1 + period * (n*T + t)), zeros on every other step, so the first
synapse delivers W1 x_q exactly on the first layer's update steps (offset 2). After the last sample
only zeros are sent (the pipeline drains).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from saf.deploy.lava.procs.phase import AbstractPhasedModel


class GradedSource(AbstractProcess):
    """Sends data[n*T + t] (graded spikes) to s_out at logical step t of sample n."""

    def __init__(self, *, data: np.ndarray, period: int, T: int, name: str = None):
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"GradedSource data must be [n_samples * T, n], got shape {data.shape}")
        if data.shape[0] % int(T):
            raise ValueError(f"GradedSource data has {data.shape[0]} rows, not a multiple of T = {T}")
        super().__init__(period=int(period), offset=1, T=int(T), n_samples=int(data.shape[0]) // int(T),
                         name=name)
        self.s_out = OutPort(shape=(data.shape[1],))
        self.data = Var(shape=data.shape, init=data)


class _AbstractSourceModel(AbstractPhasedModel):
    s_out = data = None

    def run_spk(self):
        pos = self.position()
        if pos is None:
            self.s_out.send(np.zeros(self.s_out.shape, dtype=self.data.dtype))
        else:
            self.s_out.send(self.data[pos[0] * self.T + pos[1]])


@implements(proc=GradedSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedSourceFixed(_AbstractSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)


@implements(proc=GradedSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyGradedSourceFloat(_AbstractSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    data: np.ndarray = LavaPyType(np.ndarray, float)
