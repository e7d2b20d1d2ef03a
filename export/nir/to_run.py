"""A NIR chain (graph.py) as this toolchain's model spec and float weights, and the run directory
`saf eval`, `saf export` and `saf verify` accept like a trained run.

Spiking layer = synapse (Affine, Linear or Conv2d; a Scale after it folds in) + neuron (IF, LIF,
CubaLIF: a current that decays is the layer's synaptic decay "alpha", core/neuron_modes.py); glue
(AvgPool2d, SumPool2d, Flatten) between layers; the readout = the last synapse, summed
over the T steps (the synapse alone, or I) or leaking with the network's lam (LI). Each layer's input
gain g and its threshold are folded into its synapse so that every layer shares one threshold:
scaling a layer's potential by c = g theta / theta_l changes none of its spikes (exact in float when
c is a power of two). A recurrent synapse's bias joins its neuron's bias (both are added every step).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Optional
from pathlib import Path

import numpy as np

from saf.export.nir.errors import NirError
from saf.export.nir.graph import F32_MAX, NEURONS, READOUTS, SYNAPSES, Chain, kind
from saf.export.nir.neurons import readout as readout_neuron, spiking
from saf.export.nir.conventions import COMPARE_OF_FLAG, CURRENT_ORDERS, DEFAULTS, SAF_META, WHY, Options
from saf.core.neuron_modes import RESETS, SYN_DECAY_KEY

@dataclass
class Imported:
    spec: dict
    tensors: dict                     # state-dict name -> float32 numpy array (SpikingNet's names)
    readout: str                      # "sum" | "leaky-sum" (train/readout.py)
    options: Options
    assumed: list = field(default_factory=list)     # one clause per assumption


def _arr(node, attr: str) -> np.ndarray:
    return np.asarray(getattr(node, attr), dtype=np.float64)


def _pair(path, name: str, node, attr: str, default: int, lo: int = 1) -> int:
    """Node attribute `attr`: one integer >= lo for both axes."""
    v = getattr(node, attr, None)
    a = np.atleast_1d(np.asarray(default if v is None else v)).ravel()
    if a.size not in (1, 2) or a.dtype.kind not in "iuf" or not (a == a[0]).all() or not np.isfinite(a[0]) \
            or a[0] != np.round(a[0]) or a[0] < lo:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} {a.tolist()} is not one integer >= {lo} for "
                       f"both axes (saf maps square kernels, strides and paddings)")
    return int(a[0])


def _synapse(path, name: str, node, shape: tuple) -> tuple:
    """(layer dict, weight, bias, output shape) of an Affine, Linear or Conv2d node fed `shape`."""
    w = _arr(node, "weight")
    k = kind(node)
    b = _arr(node, "bias") if k != "Linear" else np.zeros(w.shape[0])
    if k == "Conv2d":
        if len(shape) != 3 or w.ndim != 4 or w.shape[1] != shape[0] or w.shape[2] != w.shape[3]:
            raise NirError(f"{path}: node '{name}' (Conv2d): weight {list(w.shape)} does not fit its input "
                           f"{list(shape)} as a square [C_out, C_in, k, k] kernel")
        kk = w.shape[2]
        s, p = _pair(path, name, node, "stride", 1), _pair(path, name, node, "padding", 0, lo=0)
        if _pair(path, name, node, "dilation", 1) != 1 or _pair(path, name, node, "groups", 1) != 1:
            raise NirError(f"{path}: node '{name}' (Conv2d): dilation and groups must be 1")
        if p >= kk or shape[1] + 2 * p < kk or shape[2] + 2 * p < kk:
            raise NirError(f"{path}: node '{name}' (Conv2d): a {kk}x{kk} kernel with padding {p} on a "
                           f"{shape[1]}x{shape[2]} input (saf maps paddings below the kernel size)")
        out = (w.shape[0], (shape[1] + 2 * p - kk) // s + 1, (shape[2] + 2 * p - kk) // s + 1)
        layer = {"type": "conv", "out": int(w.shape[0]), "kernel": int(kk), "stride": s, "padding": p}
    else:
        if len(shape) != 1 or w.ndim != 2 or w.shape[1] != shape[0]:
            raise NirError(f"{path}: node '{name}' ({k}): weight {list(w.shape)} does not fit its input "
                           f"{list(shape)} (a flat input of {w.shape[-1]})")
        out = (w.shape[0],)
        layer = {"type": "linear", "out": int(w.shape[0])}
    if b.shape != (w.shape[0],):
        raise NirError(f"{path}: node '{name}' ({k}): bias {list(b.shape)} does not match {w.shape[0]} outputs")
    return layer, w.copy(), b.copy(), out


def _pool(path, name: str, node, shape: tuple) -> tuple:
    kk = _pair(path, name, node, "kernel_size", 2)
    if _pair(path, name, node, "stride", kk) != kk or _pair(path, name, node, "padding", 0, lo=0) != 0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): saf maps pooling with stride = kernel and no padding")
    if len(shape) != 3 or shape[1] < kk or shape[2] < kk:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): needs a [C, H, W] input of at least {kk}x{kk}, "
                       f"got {list(shape)}")
    return kk, (shape[0], shape[1] // kk, shape[2] // kk)


def _scale(path, name: str, node, pend: dict) -> None:
    s = _arr(node, "scale")
    n = pend["w"].shape[0]
    per = s.reshape(n, -1) if s.size % n == 0 and s.size else None
    if per is None or not (per == per[:, :1]).all() or (per <= 0).any():
        raise NirError(f"{path}: node '{name}' (Scale): needs one positive factor per output channel of "
                       f"'{pend['name']}', got shape {list(s.shape)}")
    c = per[:, 0]
    pend["w"] = pend["w"] * c.reshape((n,) + (1,) * (pend["w"].ndim - 1))
    pend["b"] = pend["b"] * c


def walk(ch: Chain, dt: float) -> dict:
    """The chain as layers: {"input_shape", "layers" (spec dicts, spiking ones with "w", "b", "neuron",
    "name"), "readout" (w, b, neuron or None), "index" (neuron name -> spiking index)}."""
    path = ch.path
    first = ch.nodes[0][1]
    dims = np.asarray(first.input_type["input"]).ravel()
    if not dims.size or (dims < 1).any() or (dims != np.round(dims)).any():
        raise NirError(f"{path}: Input node '{ch.nodes[0][0]}': shape {dims.tolist()} is not positive integers")
    shape = tuple(int(d) for d in dims)
    in_shape, layers, pend, factor, index = shape, [], None, 1.0, {}
    for name, node in ch.nodes[1:-1]:
        k = kind(node)
        if k in SYNAPSES:
            if pend is not None:
                raise NirError(f"{path}: node '{name}' ({k}) follows synapse '{pend['name']}' with no neuron between "
                               f"(saf maps synapse -> neuron layers)")
            layer, w, b, shape = _synapse(path, name, node, shape)
            pend = {"name": name, "layer": layer, "w": w * factor, "b": b, "shape": shape}
            factor = 1.0
        elif k == "Scale":
            if pend is None:
                raise NirError(f"{path}: node '{name}' (Scale) does not follow a synapse")
            _scale(path, name, node, pend)
        elif k in ("AvgPool2d", "SumPool2d", "Flatten"):
            if pend is not None:
                raise NirError(f"{path}: node '{name}' ({k}) sits between synapse '{pend['name']}' and its neuron")
            if k == "Flatten":
                if len(shape) > 1:
                    layers.append({"type": "flatten"})
                    shape = (int(np.prod(shape)),)
                continue
            kk, shape = _pool(path, name, node, shape)
            layers.append({"type": "avgpool", "kernel": kk})
            factor *= kk * kk if k == "SumPool2d" else 1.0
        elif k in NEURONS:
            if pend is None:
                raise NirError(f"{path}: node '{name}' ({k}) has no synapse in front of it")
            index[name] = sum(1 for l in layers if "neuron" in l)
            layers.append(dict(pend["layer"], w=pend["w"], b=pend["b"], name=name,
                               neuron=spiking(path, name, node, dt)))
            pend = None
        elif k in READOUTS:
            if pend is None or (name, node) != ch.nodes[-2]:
                raise NirError(f"{path}: node '{name}' ({k}) is read as the readout: it must follow the last synapse "
                               f"and feed the Output node")
            pend["neuron"] = readout_neuron(path, name, node, dt)
    if not index:
        raise NirError(f"{path}: the graph has no spiking layer (IF, LIF, CubaLIF)")
    if pend is None and kind(ch.nodes[-2][1]) in NEURONS:      # a spiking output layer: spiking_out.py
        return {"input_shape": in_shape, "layers": layers, "readout": None, "index": index, "shape": shape}
    if pend is None:
        last = ch.nodes[-2]
        raise NirError(f"{path}: the graph ends in '{last[0]}' ({kind(last[1])}): saf reads out the last synapse "
                       f"(Affine, or Affine -> I / LI) or the last spiking node (IF, LIF, CubaLIF) before the Output")
    if factor != 1.0:
        raise NirError(f"{path}: a SumPool2d before the readout is not supported")
    if pend["layer"]["type"] != "linear":
        raise NirError(f"{path}: the readout synapse '{pend['name']}' must be Affine or Linear")
    return {"input_shape": in_shape, "layers": layers, "readout": pend, "index": index}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assumed_options(ch: Chain, meta: dict, given: Options) -> tuple:
    """(options, clauses saying what was assumed): a flag given wins, then the file's saf metadata `meta`
    (meta.saf_meta), then DEFAULTS. A bad value is refused naming where it came from (the flag, or the file)."""
    out, assumed, where = Options(), [], {}
    cuba = [name for name, n in ch.nodes if kind(n) in ("CubaLIF", "CubaLI")]
    for f in asdict(DEFAULTS):
        v = getattr(given, f)
        where[f] = "--T" if f == "T" else "--" + f.replace("_", "-")
        if v is None and f in meta:
            v, where[f] = meta[f], f"{ch.path}: graph metadata '{SAF_META}' {f}"
        if v is None and f == "current_order" and (SAF_META in ch.metadata or not cuba):
            v = DEFAULTS.current_order           # saf's own files use its layer's order; no CubaLIF: no question
        if v is None:
            v = getattr(DEFAULTS, f)
            assumed.append(f"{where[f]} {v} ({WHY[f]})")
        setattr(out, f, v)
    if out.current_order not in CURRENT_ORDERS:
        raise NirError(f"--current-order {out.current_order}: expected one of {', '.join(CURRENT_ORDERS)}")
    if out.current_order == "nir" and cuba:
        raise NirError(f"{ch.path}: node '{cuba[0]}' (CubaLIF/CubaLI) read with --current-order nir (v[t] adds the "
                       f"previous step's current syn[t-1]) needs a one-step delay in the layer, which saf's two-state "
                       f"layer and Loihi's CUBA neuron do not have; --current-order snntorch reads v[t] + syn[t] "
                       f"(snnTorch's Synaptic, Norse's LIFCell)")
    if out.reset not in RESETS:
        raise NirError(f"{where['reset']} {out.reset!r}: expected one of {', '.join(RESETS)}")
    if not isinstance(out.compare, str) or out.compare not in COMPARE_OF_FLAG:
        raise NirError(f"{where['compare']} {out.compare!r}: expected gt (v > theta, NIR) or ge (v >= theta)")
    if isinstance(out.T, bool) or not (isinstance(out.T, int) and out.T >= 1):
        raise NirError(f"{where['T']} {out.T!r}: must be an integer >= 1")
    if isinstance(out.dt, bool) or not (isinstance(out.dt, (int, float)) and 0 < out.dt < math.inf):
        raise NirError(f"{where['dt']} {out.dt!r}: must be a positive finite number")
    for f in ("encoder", "dataset"):
        if not isinstance(getattr(out, f), str):
            raise NirError(f"{where[f]} {getattr(out, f)!r}: must be a name (a string)")
    return out, assumed


def image_shape(ch: Chain, layers: list, flat: tuple, dataset: str, given: Optional[tuple]) -> tuple:
    """(input shape for the spec, assumed clause or None). A file whose Input is flat ([64]: Norse writes no
    Flatten, its users feed x.flatten(1)) and whose first layer is linear reads the same C-order vector from
    images: --input-shape gives their shape, else the dataset's when it loads without files (digits) and has
    as many values. A linear layer flattens its input in C order, so the weights do not change."""
    n = int(np.prod(flat))
    first = next((l for l in layers if l.get("type") in ("linear", "conv")), {})
    if given is not None:
        if int(np.prod(given)) != n:
            raise NirError(f"--input-shape {','.join(map(str, given))}: {int(np.prod(given))} values, the Input of "
                           f"{ch.path} has {n}")
        if len(flat) != 1 or first.get("type") != "linear":
            raise NirError(f"--input-shape: {ch.path}'s Input {list(flat)} is not a flat vector read by a linear "
                           f"layer; its shape is the file's")
        return tuple(given), None
    if len(flat) != 1 or first.get("type") != "linear":
        return tuple(flat), None
    from saf.train.data import DatasetError, load_dataset
    try:
        shape = tuple(load_dataset(dataset).input_shape)
    except DatasetError:                    # needs --data-root (mnist, ...): keep the flat shape
        return tuple(flat), None
    if len(shape) < 2 or int(np.prod(shape)) != n:
        return tuple(flat), None
    return shape, (f"--input-shape {','.join(map(str, shape))} (the Input is a flat [{n}]: {dataset}'s images "
                   f"flattened in C order, as x.flatten(1))")


def build(ch: Chain, meta: dict, given: Options, input_shape: Optional[tuple] = None,
          readout_choice: Optional[str] = None) -> Imported:
    """The Imported network of chain `ch` whose saf metadata is `meta` (spec validated by the caller's
    SpikingNet); input_shape: the images a flat Input reads (image_shape); readout_choice: --readout of a
    graph ending in a spiking node (spiking_out.py; None: count)."""
    from saf.export.nir.spiking_out import check_choice, spiking_output

    opts, assumed = assumed_options(ch, meta, given)
    g = walk(ch, float(opts.dt))
    check_choice(ch, g, readout_choice)
    counted, clause = spiking_output(ch, g, readout_choice, meta) if g["readout"] is None else ("", "")
    spiking_layers = [l for l in g["layers"] if "neuron" in l]
    n0 = spiking_layers[0]["neuron"]
    lam, theta = n0.lam, n0.theta
    for l in spiking_layers:
        if l["neuron"].lam != lam:
            raise NirError(f"{ch.path}: node '{l['name']}' leaks by {l['neuron'].lam:g} per step, node "
                           f"'{spiking_layers[0]['name']}' by {lam:g}: saf needs one leak for the network")
        if l["neuron"].note and l["neuron"].note not in assumed and SAF_META not in ch.metadata:
            assumed.append(l["neuron"].note)      # a file saf wrote states its discrete semantics: nothing assumed
    ro = g["readout"]
    rn = ro.get("neuron")
    readout = "sum"
    if rn is not None and rn.lam != 1.0:
        if rn.lam != lam:
            raise NirError(f"{ch.path}: readout leaks by {rn.lam:g} per step, the neurons by {lam:g}: saf's readout "
                           f"integrator leaks by the network's lam or not at all")
        readout = "leaky-sum"
    readout = counted or readout
    assumed += [clause] if clause else []
    tensors, spec_layers, scale = {}, [], []
    for l in g["layers"]:
        if "neuron" not in l:
            spec_layers.append(l)
            continue
        c = l["neuron"].gain * theta / l["neuron"].theta
        i = len(scale)
        scale.append(c)
        tensors[f"blocks.{i}.weight"] = l["w"] * c
        tensors[f"blocks.{i}.bias"] = l["b"] * c
        spec_layers.append({k: v for k, v in l.items() if k not in ("w", "b", "neuron", "name")}
                           | {"reset": opts.reset, "compare": COMPARE_OF_FLAG[opts.compare]}
                           | ({SYN_DECAY_KEY: l["neuron"].syn} if l["neuron"].syn else {}))
    gr = rn.gain if rn is not None else 1.0
    tensors["readout.weight"], tensors["readout.bias"] = ro["w"] * gr, ro["b"] * gr
    feedback = _feedback(ch, g, tensors, scale)
    shape, note = image_shape(ch, g["layers"], tuple(g["input_shape"]), opts.dataset, input_shape)
    if note:
        assumed.append(note)
    if len(shape) > 1 and len(g["input_shape"]) == 1:
        spec_layers.insert(0, {"type": "flatten"})       # the images as the flat vector the file's Input reads
    spec = {"name": "nir-" + Path(ch.path).stem, "input_shape": list(shape),
            "num_classes": int(ro["w"].shape[0]), "neuron": {"lam": lam, "theta": theta},
            "weight_standardization": False, "T": int(opts.T), "layers": spec_layers,
            "source": {"format": "nir", "file": Path(ch.path).name, "sha256": sha256(ch.path),
                       "dt": float(opts.dt), "encoder": opts.encoder, "assumed": assumed}}
    if feedback:
        spec["feedback"] = feedback
    return Imported(spec, float32_tensors(ch, tensors), readout, opts, assumed)


def float32_tensors(ch: Chain, tensors: dict) -> dict:
    """`tensors` as float32, refused in one line where a value (the file's, times the gain and threshold
    ratio folded into it) is beyond float32's range."""
    for k, v in tensors.items():
        top = float(np.max(np.abs(v))) if np.size(v) else 0.0
        if not top <= F32_MAX:
            raise NirError(f"{ch.path}: the imported tensor {k} reaches {top:g} (its node's values times the gain and "
                           f"threshold ratio folded in), beyond float32's range")
    return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def _feedback(ch: Chain, g: dict, tensors: dict, scale: list) -> list:
    """Spec feedback edges of the chain's recurrent synapses (weights into `tensors`, scaled like their
    destination layer; a recurrent bias added to the destination's bias)."""
    out = []
    spk = [l for l in g["layers"] if "neuron" in l]
    for j, (name, node, src_n, dst_n) in enumerate(ch.recurrent):
        src, dst = g["index"][src_n], g["index"][dst_n]
        if dst > src:
            raise NirError(f"{ch.path}: recurrent synapse '{name}' runs forward from '{src_n}' to '{dst_n}'; saf's "
                           f"feedback edges run back to the same or an earlier layer")
        s_shape = (spk[src]["out"],) if spk[src]["type"] == "linear" else None
        if kind(node) == "Conv2d" or spk[src]["type"] != "linear" or spk[dst]["type"] != "linear":
            raise NirError(f"{ch.path}: recurrent synapse '{name}' ({kind(node)}): saf imports recurrent Affine/"
                           f"Linear synapses between linear layers")
        _, w, b, _ = _synapse(ch.path, name, node, s_shape)
        if w.shape[0] != spk[dst]["out"]:
            raise NirError(f"{ch.path}: recurrent synapse '{name}': {w.shape[0]} outputs, '{dst_n}' has {spk[dst]['out']}")
        tensors[f"fb.{j}.weight"] = w * scale[dst]
        tensors[f"blocks.{dst}.bias"] = tensors[f"blocks.{dst}.bias"] + b * scale[dst]
        out.append({"src": src, "dst": dst})
    return out
