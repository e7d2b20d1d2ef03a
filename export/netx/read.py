"""A lava-dl netx file (`.net`, HDF5) as typed layer records, read the way lava-dl 0.6.0's loader reads it
(netx/hdf5.py, utils.NetDict): every value is a dataset under layer/0..n-1; weights and biases are cast
to int (truncated toward zero) as netx casts them; shapes are (C, H, W) or (N,) as slayer writes them.

Only what netx builds as Lava's stock LIF is accepted: input, flatten, dense, dense_rec and conv layers
with CUBA or LOIHI neurons (du = iDecay - 1, dv = vDecay, vth = vThMant, bias exponent 6). Everything
else is refused in one line naming the file and the layer (NetxError): SDNN, RF and unknown neurons,
graded spikes, nonzero axonal delays, pooling and the other layers netx raises NotImplementedError on,
complex (dense_comp) layers, non-finite weights, and files h5py cannot read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from saf.export.netx.errors import NetxError

SAF_INPUT = "saf_input_quantization"   # [bits, scale, signed] in an input layer saf export --target netx wrote
KINDS = ("input", "flatten", "dense", "dense_rec", "conv")
LIF_NEURONS = ("CUBA", "LOIHI")          # both are built as Lava's LIF by netx
REFUSED_LAYERS = {
    "pool": "netx does not build pooling layers (lava-dl raises NotImplementedError); fold the pooling into "
            "the next layer's weights or train without it",
    "average": "netx does not build average layers (lava-dl raises NotImplementedError); read the output "
               "spikes of the layer before it instead",
    "concat": "netx does not build concat layers (lava-dl raises NotImplementedError)",
    "convT": "netx does not build transposed convolutions (lava-dl raises NotImplementedError)",
    "unpool": "netx does not build unpooling layers (lava-dl raises NotImplementedError)",
    "dense_comp": "complex (resonate-and-fire) dense layers are not saf's LIF",
}


@dataclass
class Neuron:
    kind: str                    # "CUBA" | "LOIHI"
    du: int                      # Lava's current decay: iDecay - 1
    dv: int                      # Lava's voltage decay: vDecay
    vth: int                     # threshold mantissa (Lava compares v > vth << 6)


@dataclass
class NetxLayer:
    index: int
    kind: str                    # one of KINDS
    shape: tuple                 # the file's shape: (C, H, W) or (N,)
    neuron: Optional[Neuron] = None
    weight: Optional[np.ndarray] = None     # int64 as netx casts it; dense [out, in], conv [out, in, kh, kw]
    weight_rec: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None       # int64 per neuron (dense) or per channel (conv)
    stride: int = 1
    padding: int = 0
    gain: int = 64               # input layers: the transform's weight (netx's default 64)
    in_bias: int = 0             # input layers: the transform's bias
    in_quant: Optional[tuple] = None   # input layers saf wrote: (bits, scale, signed) of x_q (write.py), which
                                       # netx ignores (it reads x_q as input_message_bits graded messages)

    @property
    def where(self) -> str:
        return f"layer {self.index} ({self.kind})"


def _text(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _ints(path, lay: str, g, key: str) -> np.ndarray:
    """A weight/bias dataset as netx reads it (astype(int)); NaN/inf refused."""
    a = np.asarray(g[key][()], dtype=np.float64)
    if not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "infinite values"
        raise NetxError(f"{path}: {lay}: {key} holds {bad}; netx would load garbage integers")
    return np.trunc(a).astype(np.int64)


def _pair(path, lay: str, g, key: str, default: int) -> int:
    if key not in g:
        return default
    a = np.atleast_1d(np.asarray(g[key][()])).reshape(-1)
    if a.size not in (1, 2) or not (a == a[0]).all():
        raise NetxError(f"{path}: {lay}: {key} {a.tolist()} differs between the axes; saf maps one {key} for both")
    return int(a[0])


def _neuron(path, lay: str, g) -> Optional[Neuron]:
    if "neuron" not in g:
        return None
    n = g["neuron"]
    kind = _text(n["type"]) if "type" in n else "?"
    if kind == "SDNN":
        raise NetxError(f"{path}: {lay}: SDNN (sigma-delta) neurons are not saf's LIF; train the network with "
                        f"CUBA neurons (slayer.block.cuba)")
    if "RF" in kind:
        raise NetxError(f"{path}: {lay}: {kind} (resonate-and-fire) neurons are not saf's LIF; train with CUBA neurons")
    if kind not in LIF_NEURONS:
        raise NetxError(f"{path}: {lay}: neuron type {kind!r} is not one netx builds as LIF (CUBA, LOIHI)")
    if "gradedSpike" in n and bool(np.asarray(n["gradedSpike"][()]).reshape(-1)[0]):
        raise NetxError(f"{path}: {lay}: graded spikes are not supported; train with binary spikes")
    if "messageBits" in n and int(np.asarray(n["messageBits"][()]).reshape(-1)[0]) != 0:
        raise NetxError(f"{path}: {lay}: graded spike messages (messageBits) are not supported")
    for key in ("iDecay", "vDecay", "vThMant"):
        if key not in n:
            raise NetxError(f"{path}: {lay}: neuron/{key} is missing")
    i_decay, v_decay, vth = (int(np.asarray(n[k][()]).reshape(-1)[0]) for k in ("iDecay", "vDecay", "vThMant"))
    if not (1 <= i_decay <= 4096 and 0 <= v_decay <= 4095 and vth >= 0):
        raise NetxError(f"{path}: {lay}: iDecay {i_decay}, vDecay {v_decay}, vThMant {vth} are outside Loihi's "
                        f"ranges (iDecay 1..4096, vDecay 0..4095, vThMant >= 0)")
    return Neuron(kind, i_decay - 1, v_decay, vth)


def _layer(path, i: int, g) -> NetxLayer:
    if "type" not in g:
        raise NetxError(f"{path}: layer {i} has no type")
    kind = _text(g["type"])
    lay = f"layer {i} ({kind})"
    if kind in REFUSED_LAYERS:
        raise NetxError(f"{path}: {lay}: {REFUSED_LAYERS[kind]}")
    if kind not in KINDS:
        raise NetxError(f"{path}: {lay}: unknown layer type (netx builds {', '.join(KINDS)})")
    if "weight" in g and isinstance(g["weight"], type(g)):         # weight/real, weight/imag
        raise NetxError(f"{path}: {lay}: complex weights are not saf's LIF")
    shape = tuple(int(d) for d in np.atleast_1d(np.asarray(g["shape"][()]))) if "shape" in g else ()
    out = NetxLayer(i, kind, shape, neuron=_neuron(path, lay, g))
    if kind == "input":
        if out.neuron is None and SAF_INPUT in g:
            q = g[SAF_INPUT][()]
            out.in_quant = (int(q[0]), float(q[1]), bool(q[2]))
        if out.neuron is not None:
            out.gain = int(np.asarray(g["weight"][()]).reshape(-1)[0]) if "weight" in g else 64
            out.in_bias = int(np.asarray(g["bias"][()]).reshape(-1)[0]) if "bias" in g else 0
        return out
    if kind == "flatten":
        return out
    if "delay" in g and np.any(np.asarray(g["delay"][()]) != 0):
        raise NetxError(f"{path}: {lay}: axonal delays (up to {int(np.max(g['delay'][()]))} steps) are not supported "
                        f"yet; train without delays (slayer's delay=False)")
    if "weight" not in g:
        raise NetxError(f"{path}: {lay}: weight is missing")
    out.weight = _ints(path, lay, g, "weight")
    out.bias = _ints(path, lay, g, "bias").reshape(-1) if "bias" in g else None
    if kind == "dense_rec":
        if "weight_rec" not in g:
            raise NetxError(f"{path}: {lay}: weight_rec is missing")
        out.weight_rec = _ints(path, lay, g, "weight_rec")
    if kind == "conv":
        if _pair(path, lay, g, "dilation", 1) != 1 or _pair(path, lay, g, "groups", 1) != 1:
            raise NetxError(f"{path}: {lay}: dilation and groups must be 1")
        out.stride, out.padding = _pair(path, lay, g, "stride", 1), _pair(path, lay, g, "padding", 0)
    return out


def read_netx(path) -> list:
    """The file's layers as NetxLayer records (in file order); NetxError in one line for anything else."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NetxError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "layer" not in f:
                raise NetxError(f"{path}: no 'layer' group (not a netx network file)")
            lg = f["layer"]
            n = len(lg)
            if n == 0 or sorted(lg.keys(), key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(n)]:
                raise NetxError(f"{path}: layer groups must be named 0..{n - 1}")
            return [_layer(path, i, lg[str(i)]) for i in range(n)]
    except NetxError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise NetxError(f"{path}: not a readable netx HDF5 file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def is_netx_file(path) -> bool:
    """True when `path` is HDF5 with netx's layout (layer/0/type), the way saf import tells it from NIR."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "layer" in f and "0" in f["layer"] and "type" in f["layer"]["0"]
    except (OSError, KeyError, ValueError, TypeError):
        return False
