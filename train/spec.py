"""Model specs as data (JSON-able dicts) and their validation/shape inference.

A spec lists spiking layers ("conv", "linear") and the linear glue between them ("avgpool", "gap",
"flatten"); a non-spiking linear readout is always appended. Feedback edges connect a spiking
layer `src` back into spiking layer `dst` (dst <= src), indices counted over spiking layers only.

    {"name": "conv-digits", "input_shape": [1, 8, 8], "num_classes": 10,
     "neuron": {"lam": 0.5, "theta": 1.0}, "weight_standardization": true, "gamma": 2.0,
     "layers": [{"type": "conv", "out": 16, "kernel": 3, "padding": 1}, {"type": "avgpool", "kernel": 2},
                {"type": "flatten"}, {"type": "linear", "out": 64}],
     "feedback": [{"src": 1, "dst": 0, "kernel": 3, "padding": 1}]}

A spiking layer may carry "reset" ("subtract" | "subtract-undecayed" | "zero") and "compare" (">=" | ">"):
its neuron modes (core/neuron_modes.py, the one list of allowed values; absent: subtract, >=), and
"alpha" (0 <= alpha < 1): a synaptic current decaying by alpha per step (snnTorch's Synaptic; absent: none).

A feedback edge may carry "norm": "spectral" (IDE, docs/methods.md#ide-spectral-normalisation: W = clamp(g, -1, 1) V / sigma(V)) and,
between conv layers, "transposed": true with "stride"/"output_padding" (IDE's CIFAR nets feed back
through a stride-2 ConvTranspose; trainable, but the IR cannot hold it, so export refuses it).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Optional

from saf.core.neuron_modes import (DEFAULT_COMPARE, DEFAULT_RESET, SYN_DECAY_KEY, NeuronMode, mode_problem,
                                    syn_decay_problem)
from saf.core.errors import SafError

SPIKING = ("conv", "linear")
GLUE = ("avgpool", "gap", "flatten")


class SpecError(SafError, ValueError):
    """An invalid model spec; the message says which field is wrong."""


@dataclass
class LayerPlan:
    """One spiking layer (or the readout) with the glue applied to its input."""
    kind: str                    # "conv" | "linear" | "readout"
    pre: list                    # glue ops on the input: ("avgpool", k) | ("gap",) | ("flatten",)
    in_shape: tuple              # shape after the glue (what the synapse sees)
    out_shape: tuple
    out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    raw_in_shape: tuple = ()     # shape before the glue (the previous layer's output)
    reset: str = DEFAULT_RESET   # spiking only: core/neuron_modes.py
    compare: str = DEFAULT_COMPARE
    syn_decay: float = 0.0       # spiking only: the synaptic current's per-step factor (0: no current state)

    @property
    def mode(self) -> NeuronMode:
        return NeuronMode(self.compare, self.reset)


@dataclass
class FeedbackPlan:
    src: int
    dst: int
    kind: str                    # "conv" | "linear"
    kernel: int = 1
    padding: int = 0
    norm: str = "none"           # "none" | "spectral" (train/modules/spectral.py)
    transposed: bool = False     # ConvTranspose2d edge (conv only)
    stride: int = 1
    output_padding: int = 0


FEEDBACK_NORMS = ("none", "spectral")


@dataclass
class Plan:
    layers: list = field(default_factory=list)     # spiking layers then the readout
    feedback: list = field(default_factory=list)


MAX_DIM = 1 << 20                   # any one size, channel count or kernel in a spec
MAX_PARAMETERS = 1 << 31            # weights in the whole network (8 GiB of float32)
MODE_KEYS = {"reset", "compare", SYN_DECAY_KEY}   # optional on spiking layers (core/neuron_modes.py)
LAYER_KEYS = {"conv": {"type", "out", "kernel", "stride", "padding"} | MODE_KEYS, "linear": {"type", "out"} | MODE_KEYS,
              "avgpool": {"type", "kernel"}, "gap": {"type"}, "flatten": {"type"}}
FEEDBACK_KEYS = {"src", "dst", "kernel", "padding", "norm", "transposed", "stride", "output_padding"}


def _int(d: dict, key: str, where: str, default=None, lo: int = 0) -> int:
    """d[key] as an int in [lo, MAX_DIM]: JSON integers only (no 3.0, "3" or true)."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: '{key}' must be an integer, got {v!r}")
    if not lo <= v <= MAX_DIM:
        raise SpecError(f"{where}: '{key}' must be in {lo}..{MAX_DIM}, got {v}")
    return v


def _number(d: dict, key: str, where: str, default: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpecError(f"{where}: '{key}' must be a finite number, got {v!r}")
    return float(v)


def _keys(d, allowed: set, where: str) -> dict:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: must be a JSON object, got {type(d).__name__} {d!r}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(allowed))})")
    return d


def _modes(d: dict, where: str) -> tuple:
    """(reset, compare) of a spiking layer's dict: its optional "reset" / "compare", else the defaults."""
    for key, default in (("reset", DEFAULT_RESET), ("compare", DEFAULT_COMPARE)):
        problem = mode_problem(d.get(key, default), key)
        if problem:
            raise SpecError(f"{where}: {problem}")
    return d.get("reset", DEFAULT_RESET), d.get("compare", DEFAULT_COMPARE)


def _syn_decay(d: dict, where: str) -> float:
    """A spiking layer's optional synaptic decay "alpha" (absent: 0, no current state)."""
    problem = syn_decay_problem(d.get(SYN_DECAY_KEY, 0.0))
    if problem:
        raise SpecError(f"{where}: {problem}")
    return float(d.get(SYN_DECAY_KEY, 0.0))


def layer_syn_decays(spec: dict) -> list:
    """Each spiking layer's synaptic decay (0: none), in order."""
    return [lp.syn_decay for lp in plan(spec).layers[:-1]]


def layer_modes(spec: dict) -> list:
    """The NeuronMode of every spiking layer of a (valid) spec, in order."""
    return [lp.mode for lp in plan(spec).layers[:-1]]


def _glue_shape(shape: tuple, op: tuple, where: str = "") -> tuple:
    if op[0] == "flatten":
        n = 1
        for d in shape:
            n *= d
        return (n,)
    if len(shape) != 3:
        raise SpecError(f"{where}{op[0]} needs a [C, H, W] input, got shape {list(shape)}")
    if op[0] == "gap":
        return (shape[0],)
    k = op[1]
    if shape[1] < k or shape[2] < k:
        raise SpecError(f"{where}avgpool kernel {k} larger than the {shape[1]}x{shape[2]} feature map")
    return (shape[0], shape[1] // k, shape[2] // k)


def _top_level(spec) -> tuple:
    """(input shape, classes, layers) with every top-level field's type and range checked."""
    if not isinstance(spec, dict):
        raise SpecError(f"a spec must be a JSON object, got {type(spec).__name__}")
    missing = [k for k in ("input_shape", "num_classes", "layers") if k not in spec]
    if missing:
        raise SpecError(f"spec needs input_shape, num_classes and layers (missing {', '.join(missing)})")
    shape = spec["input_shape"]
    if not isinstance(shape, list) or not shape:
        raise SpecError(f"'input_shape' must be a non-empty list of positive integers, got {shape!r}")
    shape = tuple(_int({"input_shape": d}, "input_shape", "spec", lo=1) for d in shape)
    classes = _int(spec, "num_classes", "spec", lo=2)
    layers = spec["layers"]
    if not isinstance(layers, list):
        raise SpecError(f"'layers' must be a list, got {type(layers).__name__}")
    if "T" in spec and spec["T"] is not None:
        _int(spec, "T", "spec", lo=1)
    if "name" in spec and not isinstance(spec["name"], str):
        raise SpecError(f"'name' must be a string, got {spec['name']!r}")
    if not isinstance(spec.get("weight_standardization", True), bool):
        raise SpecError(f"'weight_standardization' must be true or false, got {spec['weight_standardization']!r}")
    if _number(spec, "gamma", "spec", 2.0) <= 0:
        raise SpecError(f"'gamma' must be positive, got {spec['gamma']}")
    if spec.get("neuron") is not None:
        neuron_params(spec)
    return shape, classes, layers


def _count_parameters(p: "Plan") -> int:
    n = 0
    for lp in p.layers:
        n += lp.out * (lp.in_shape[0] * lp.kernel * lp.kernel if lp.kind == "conv" else lp.in_shape[0]) + lp.out
    for f in p.feedback:
        n += p.layers[f.dst].out * p.layers[f.src].out * f.kernel * f.kernel
    return n


def plan(spec: dict) -> Plan:
    """Validate a spec (types, ranges, unknown keys, shapes that compose) and infer every layer's shapes."""
    shape, classes, layers = _top_level(spec)
    out = Plan()
    pre: list = []
    raw = shape
    for i, ld in enumerate(layers):
        t = ld.get("type") if isinstance(ld, dict) else None
        if not isinstance(t, str) or t not in LAYER_KEYS:
            if not isinstance(ld, dict):
                raise SpecError(f"layer {i}: must be a JSON object like {{\"type\": \"linear\", \"out\": 64}}, got {ld!r}")
            raise SpecError(f"layer {i}: unknown type {t!r} (known: {', '.join(SPIKING + GLUE)})")
        where = f"layer {i} ({t})"
        _keys(ld, LAYER_KEYS[t], where)
        if t in GLUE:
            op = ("avgpool", _int(ld, "kernel", where, 2, lo=1)) if t == "avgpool" else (t,)
            pre.append(op)
            shape = _glue_shape(shape, op, f"{where}: ")
            continue
        n = _int(ld, "out", where, None, lo=1)
        modes = _modes(ld, f"{where} (spiking layer {len(out.layers)})")
        syn = _syn_decay(ld, f"{where} (spiking layer {len(out.layers)})")
        if t == "conv":
            if len(shape) != 3:
                raise SpecError(f"{where}: input must be [C, H, W], got {list(shape)} (remove the flatten?)")
            k, st, pad = (_int(ld, "kernel", where, 3, lo=1), _int(ld, "stride", where, 1, lo=1),
                          _int(ld, "padding", where, 0))
            h, w = (shape[1] + 2 * pad - k) // st + 1, (shape[2] + 2 * pad - k) // st + 1
            if h < 1 or w < 1:
                raise SpecError(f"{where}: kernel {k} does not fit the {shape[1]}x{shape[2]} input")
            o_shape = (n, h, w)
            out.layers.append(LayerPlan("conv", pre, shape, o_shape, n, k, st, pad, raw, *modes, syn_decay=syn))
        else:
            if len(shape) != 1:
                raise SpecError(f"{where}: input must be flat, got {list(shape)} (add a flatten or gap)")
            o_shape = (n,)
            out.layers.append(LayerPlan("linear", pre, shape, o_shape, n, raw_in_shape=raw, reset=modes[0],
                                        compare=modes[1], syn_decay=syn))
        shape, raw, pre = o_shape, o_shape, []
    if not out.layers:
        raise SpecError("spec has no spiking layer")
    if len(shape) != 1:
        pre = pre + [("flatten",)]
        shape = _glue_shape(shape, ("flatten",))
    out.layers.append(LayerPlan("readout", pre, shape, (classes,), classes, raw_in_shape=raw))
    fbs = spec.get("feedback", []) or []
    if not isinstance(fbs, list):
        raise SpecError(f"'feedback' must be a list, got {type(fbs).__name__}")
    n_sp = len(out.layers) - 1
    for j, fb in enumerate(fbs):
        where = f"feedback {j}"
        _keys(fb, FEEDBACK_KEYS, where)
        src, dst = _int(fb, "src", where, None), _int(fb, "dst", where, None)
        if not (0 <= dst <= src < n_sp):
            raise SpecError(f"{where}: need 0 <= dst <= src < {n_sp} spiking layers, got src={src} dst={dst}")
        a, b = out.layers[src], out.layers[dst]
        norm = fb.get("norm", "none")
        if norm not in FEEDBACK_NORMS:
            raise SpecError(f"feedback {j}: unknown norm {norm!r} (known: {', '.join(FEEDBACK_NORMS)})")
        if a.kind == "conv" and b.kind == "conv" and fb.get("transposed"):
            out.feedback.append(_transposed_edge(j, fb, a, b, src, dst, norm))
        elif a.kind == "conv" and b.kind == "conv":
            k, p = _int(fb, "kernel", where, 3, lo=1), _int(fb, "padding", where, 1)
            if (a.out_shape[1] + 2 * p - k + 1, a.out_shape[2] + 2 * p - k + 1) != b.out_shape[1:]:
                raise SpecError(f"{where}: a {k}x{k} conv (padding {p}) from {list(a.out_shape)} "
                                f"cannot produce {list(b.out_shape)}")
            out.feedback.append(FeedbackPlan(src, dst, "conv", k, p, norm))
        elif a.kind == "linear" and b.kind == "linear" and not fb.get("transposed"):
            out.feedback.append(FeedbackPlan(src, dst, "linear", norm=norm))
        else:
            raise SpecError(f"{where}: src and dst must both be conv (same spatial size) or both linear")
    n_params = _count_parameters(out)
    if n_params > MAX_PARAMETERS:
        raise SpecError(f"the network has {n_params:,} weights; saf accepts at most {MAX_PARAMETERS:,}")
    return out


def _transposed_edge(j: int, fb: dict, a: LayerPlan, b: LayerPlan, src: int, dst: int, norm: str) -> FeedbackPlan:
    """A ConvTranspose2d feedback edge whose output has the destination's spatial size."""
    if norm != "spectral":
        raise SpecError(f"feedback {j}: a transposed edge needs \"norm\": \"spectral\" (IDE's CIFAR nets)")
    where = f"feedback {j}"
    k, p = _int(fb, "kernel", where, 3, lo=1), _int(fb, "padding", where, 1)
    s, op = _int(fb, "stride", where, 2, lo=1), _int(fb, "output_padding", where, 1)
    size = tuple((a.out_shape[i] - 1) * s - 2 * p + k + op for i in (1, 2))
    if s < 1 or not (0 <= op < s) or size != tuple(b.out_shape[1:]):
        raise SpecError(f"feedback {j}: a transposed {k}x{k} conv (stride {s}, padding {p}, output_padding {op}) "
                        f"from {list(a.out_shape)} cannot produce {list(b.out_shape)}")
    return FeedbackPlan(src, dst, "conv", k, p, norm, True, s, op)


def neuron_params(spec: dict) -> tuple:
    n = spec.get("neuron", {}) or {}
    if not isinstance(n, dict):
        raise SpecError(f"'neuron' must be a JSON object like {{\"lam\": 0.5, \"theta\": 1.0}}, got {n!r}")
    lam, theta = _number(n, "lam", "neuron", 0.5), _number(n, "theta", "neuron", 1.0)
    if not (0.0 < lam <= 1.0):
        raise SpecError(f"neuron.lam must be in (0, 1], got {lam}")
    if theta <= 0:
        raise SpecError(f"neuron.theta must be positive, got {theta}")
    return lam, theta


def _conv(out, k=3, s=1, p=1):
    return {"type": "conv", "out": out, "kernel": k, "stride": s, "padding": p}


def vgg_layers(widths=(64, 128, 256, 256, 512, 512, 512, 512)) -> list:
    """The paper's VGG: 64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-GAP-(FC readout)."""
    w = widths
    return [_conv(w[0]), _conv(w[1]), {"type": "avgpool", "kernel": 2}, _conv(w[2]), _conv(w[3]),
            {"type": "avgpool", "kernel": 2}, _conv(w[4]), _conv(w[5]), {"type": "avgpool", "kernel": 2},
            _conv(w[6]), _conv(w[7]), {"type": "gap"}]


def vgg_spec(name: str, widths=None, feedback: bool = False, input_shape=(3, 32, 32), classes=10) -> dict:
    spec = {"name": name, "input_shape": list(input_shape), "num_classes": classes,
            "layers": vgg_layers(widths or (64, 128, 256, 256, 512, 512, 512, 512))}
    if feedback:  # VGG-F: the last conv feeds back into the first conv of its stage (same 4x4 map)
        spec["feedback"] = [{"src": 7, "dst": 6, "kernel": 3, "padding": 1}]
    return spec


BUILTIN = {
    "mlp-digits": {"input_shape": [1, 8, 8], "num_classes": 10,
                   "layers": [{"type": "flatten"}, {"type": "linear", "out": 128}, {"type": "linear", "out": 64}]},
    "mlp-iris": {"input_shape": [4], "num_classes": 3,
                 "layers": [{"type": "linear", "out": 32}, {"type": "linear", "out": 16}]},
    "conv-digits": {"input_shape": [1, 8, 8], "num_classes": 10,
                    "layers": [_conv(16), _conv(32), {"type": "avgpool", "kernel": 2},
                               {"type": "flatten"}, {"type": "linear", "out": 128}]},
    "conv-digits-f": {"input_shape": [1, 8, 8], "num_classes": 10,
                      "layers": [_conv(16), _conv(32), {"type": "avgpool", "kernel": 2},
                                 {"type": "flatten"}, {"type": "linear", "out": 128}],
                      "feedback": [{"src": 1, "dst": 0, "kernel": 3, "padding": 1}]},
    # N-MNIST event frames (2 polarity channels, 34x34): strided convs keep the Lava graph small
    "nmnist-conv": {"input_shape": [2, 34, 34], "num_classes": 10,
                    "layers": [_conv(8, s=2), _conv(16, s=2), {"type": "flatten"}, {"type": "linear", "out": 64}]},
    # MNIST 28x28x1 (docs/mnist.md): stride-2 convs (28 -> 14 -> 7) keep an epoch near a minute on 2 CPU cores
    "conv-mnist": {"input_shape": [1, 28, 28], "num_classes": 10,
                   "layers": [_conv(16, s=2), _conv(32, s=2), {"type": "flatten"}, {"type": "linear", "out": 128}]},
    "conv-mnist-wide": {"input_shape": [1, 28, 28], "num_classes": 10,       # the 99.3 % recipe (docs/mnist.md)
                        "layers": [_conv(32, s=2), _conv(64, s=2), {"type": "flatten"}, {"type": "linear", "out": 128}]},
    "mlp-mnist": {"input_shape": [1, 28, 28], "num_classes": 10,
                  "layers": [{"type": "flatten"}, {"type": "linear", "out": 256}, {"type": "linear", "out": 128}]},
    "vgg11-cifar": vgg_spec("vgg11-cifar"),
    "vggf-cifar": vgg_spec("vggf-cifar", feedback=True),
    "vgg11-small-cifar": vgg_spec("vgg11-small-cifar", widths=(8, 16, 32, 32, 64, 64, 64, 64)),
}


def register_specs(specs: dict) -> None:
    """A training method's own built-in nets, added when the method's package is imported (IDE's feedback
    nets: train/methods/ide/specs.py; train/__init__.py imports it), so this module imports no method."""
    BUILTIN.update(specs)


def builtin_spec(name: str) -> dict:
    if name not in BUILTIN:
        raise SpecError(f"unknown model {name!r} (known: {', '.join(BUILTIN)}; or a path to a JSON spec)")
    spec = copy.deepcopy(BUILTIN[name])
    spec["name"] = name
    return spec


def load_spec(name_or_path: str) -> dict:
    """A builtin name or a JSON file path; a file's spec is validated fully and its errors name it."""
    if name_or_path in BUILTIN:
        return builtin_spec(name_or_path)
    if name_or_path.endswith(".json"):
        try:
            with open(name_or_path, encoding="utf-8") as f:
                spec = json.load(f)
        except FileNotFoundError:
            raise SpecError(f"{name_or_path}: no such spec file") from None
        except OSError as e:
            raise SpecError(f"{name_or_path}: cannot read the spec file ({e.strerror or e})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SpecError(f"{name_or_path}: not valid JSON ({e})") from None
        if not isinstance(spec, dict):
            raise SpecError(f"{name_or_path}: a spec must be a JSON object")
        spec.setdefault("name", name_or_path.rsplit("/", 1)[-1][:-5])
        try:
            plan(spec)
        except SpecError as e:
            raise SpecError(f"{name_or_path}: {e}") from None
        return spec
    return builtin_spec(name_or_path)


def with_neuron(spec: dict, lam: Optional[float] = None, theta: Optional[float] = None) -> dict:
    spec = copy.deepcopy(spec)
    n = dict(spec.get("neuron", {}) or {})
    if lam is not None:
        n["lam"] = lam
    if theta is not None:
        n["theta"] = theta
    n.setdefault("lam", 0.5)
    n.setdefault("theta", 1.0)
    spec["neuron"] = n
    neuron_params(spec)
    return spec
