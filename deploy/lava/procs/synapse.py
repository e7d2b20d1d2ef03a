"""Synapse Processes holding the IR's integer weights exactly: DenseSyn and ConvSyn.

Both behave like Loihi's (and lava's stock Dense/Conv) synapses in time: on every Lava step they
first send the current computed on the previous step, then receive this step's input. Each
connection therefore delivers one step late, which also makes recurrent/feedback loops deadlock free.
Unlike lava's stock Dense (fixed point), no bit of the weights is dropped; unlike the stock Conv,
ConvSyn uses torch's layout (weights [C_out, C_in, kh, kw], cross-correlation, inputs and outputs
flattened in C, H, W order) and an im2col gather + matrix product instead of scipy per channel pair.
Inputs may be binary spikes or graded (integer payload) spikes; the product is exact in int64.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class DenseSyn(AbstractProcess):
    """All-to-all synapses: a_out[t+1] = (weights @ s_in[t]) << weight_exp; weights [n_out, n_in] (integers).
    weight_exp > 0: the high word of a two-word weight (hw_targets/words.py), as Lava's Dense shifts its sums."""

    def __init__(self, *, weights: np.ndarray, name: str = None, weight_exp: int = 0):
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise ValueError(f"DenseSyn weights must be 2-D [n_out, n_in], got shape {weights.shape}")
        super().__init__(name=name, weight_exp=_exp(weight_exp))
        n_out, n_in = weights.shape
        self.s_in = InPort(shape=(n_in,))
        self.a_out = OutPort(shape=(n_out,))
        self.weights = Var(shape=weights.shape, init=weights)


class ConvSyn(AbstractProcess):
    """Convolution synapses (cross-correlation, torch layout), flattened C, H, W ports."""

    def __init__(self, *, weights: np.ndarray, in_shape: tuple, stride: int = 1, padding: int = 0,
                 name: str = None, weight_exp: int = 0):
        weights = np.asarray(weights)
        in_shape = tuple(int(d) for d in in_shape)
        if weights.ndim != 4 or len(in_shape) != 3 or weights.shape[1] != in_shape[0]:
            raise ValueError(f"ConvSyn needs weights [C_out, C_in, kh, kw] matching input (C, H, W); "
                             f"got weights {weights.shape} for input {in_shape}")
        out_shape = self.output_shape(in_shape, weights.shape, stride, padding)
        super().__init__(in_shape=in_shape, out_shape=out_shape, stride=int(stride),
                         padding=int(padding), name=name, weight_exp=_exp(weight_exp))
        self.in_shape, self.out_shape = in_shape, out_shape
        self.s_in = InPort(shape=(int(np.prod(in_shape)),))
        self.a_out = OutPort(shape=(int(np.prod(out_shape)),))
        self.weights = Var(shape=weights.shape, init=weights)

    @staticmethod
    def output_shape(in_shape, w_shape, stride, padding) -> tuple:
        c, h, w = in_shape
        co, _, kh, kw = w_shape
        ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
        if ho < 1 or wo < 1 or stride < 1 or padding < 0:
            raise ValueError(f"conv kernel {kh}x{kw} stride {stride} padding {padding} does not fit "
                             f"input {in_shape}")
        return (co, ho, wo)


def _exp(weight_exp) -> int:
    e = int(weight_exp)
    if not 0 <= e <= 15:
        raise ValueError(f"synapse weight_exp must be in [0, 15], got {weight_exp}")
    return e


def gather_index(in_shape, w_shape, stride, padding) -> np.ndarray:
    """[Ho*Wo, C*kh*kw] flat input index of every patch element; padding points at index C*H*W."""
    c, h, w = in_shape
    _, _, kh, kw = w_shape
    _, ho, wo = ConvSyn.output_shape(in_shape, w_shape, stride, padding)
    ci, ki, kj = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    rows = oi.reshape(-1, 1) * stride - padding + ki.reshape(1, -1)
    cols = oj.reshape(-1, 1) * stride - padding + kj.reshape(1, -1)
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    flat = ci.reshape(1, -1) * h * w + rows * w + cols
    return np.where(valid, flat, c * h * w)


class _AbstractSynModel(PyLoihiProcessModel):
    """Send last step's current first (one step of delay), then receive and compute."""
    s_in = None
    a_out = None
    weights = None
    dtype = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._ready = False
        self._a_buff = None

    def _prepare(self):
        self._w = np.asarray(self.weights, dtype=self.dtype)
        self._a_buff = np.zeros(self.a_out.shape, dtype=self.dtype)
        self._gain = self.dtype(1 << int(self.proc_params.get("weight_exp", 0)))    # the sum << weight_exp

    def _compute(self, s):
        return self._w @ s

    def run_spk(self):
        if not self._ready:
            self._prepare()
            self._ready = True
        self.a_out.send(self._a_buff)
        s = self.s_in.recv().astype(self.dtype, copy=False)
        self._a_buff = self._compute(s) * self._gain


class _AbstractConvModel(_AbstractSynModel):
    def _prepare(self):
        super()._prepare()
        p = self.proc_params
        self._idx = gather_index(p["in_shape"], self.weights.shape, p["stride"], p["padding"])
        self._w = self._w.reshape(self._w.shape[0], -1)
        self._pad = np.zeros(1, dtype=self.dtype)

    def _compute(self, s):
        cols = np.concatenate([s, self._pad])[self._idx]          # [Ho*Wo, C*kh*kw]
        return (self._w @ cols.T).reshape(-1)                    # [C_out, Ho*Wo] -> C, H, W order


@implements(proc=DenseSyn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDenseSynFixed(_AbstractSynModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=9)
    dtype = np.int64


@implements(proc=DenseSyn, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDenseSynFloat(_AbstractSynModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    dtype = np.float64


@implements(proc=ConvSyn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvSynFixed(_AbstractConvModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=9)
    dtype = np.int64


@implements(proc=ConvSyn, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvSynFloat(_AbstractConvModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    dtype = np.float64
