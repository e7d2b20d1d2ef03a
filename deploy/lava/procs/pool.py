"""SumPool: a k x k sum-pool stage sending counts as graded spikes (export/ir.py Layer.in_pool).

On Loihi 2 this is a stage of sum neurons: ones-weight synapses from the k x k block of one channel
into a neuron that sends its input count (0..k^2) as a graded spike every step. Here one Process
holds both, with the timing of a synapse: on every Lava step it first sends the counts computed on
the previous step (one step of delay, like the hardware's synapse-to-neuron hop), then receives this
step's spikes and sums each block. It keeps no state between steps, so it needs no schedule: the
layer behind it runs one step later (deploy/lava/graph.py's offsets count the stage).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SumPool(AbstractProcess):
    """s_in: flattened (C, H, W) spikes; a_out: flattened (C, H/k, W/k) block sums (graded)."""

    def __init__(self, *, in_shape: tuple, k: int, name: str = None):
        in_shape = tuple(int(d) for d in in_shape)
        k = int(k)
        if len(in_shape) != 3 or k < 1 or in_shape[1] % k or in_shape[2] % k:
            raise ValueError(f"SumPool {k}x{k} needs a (C, H, W) input with H, W multiples of {k}, got {in_shape}")
        c, h, w = in_shape
        super().__init__(in_shape=in_shape, k=k, name=name)
        self.s_in = InPort(shape=(c * h * w,))
        self.a_out = OutPort(shape=(c * (h // k) * (w // k),))


class _AbstractSumPoolModel(PyLoihiProcessModel):
    s_in = a_out = None
    dtype = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._c, self._h, self._w = proc_params["in_shape"]
        self._k = proc_params["k"]
        self._buf = None

    def run_spk(self):
        if self._buf is None:
            self._buf = np.zeros(self.a_out.shape, dtype=self.dtype)
        self.a_out.send(self._buf)
        s = self.s_in.recv().astype(self.dtype, copy=False)
        c, h, w, k = self._c, self._h, self._w, self._k
        self._buf = s.reshape(c, h // k, k, w // k, k).sum(axis=(2, 4)).reshape(-1)


@implements(proc=SumPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySumPoolFixed(_AbstractSumPoolModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    dtype = np.int64


@implements(proc=SumPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySumPoolFloat(_AbstractSumPoolModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    dtype = np.float64
