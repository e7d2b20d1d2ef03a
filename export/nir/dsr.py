"""A DSR run that `saf export --target nir` wrote (from_run.py), read back as the DSR run it was.

The graph metadata `saf` names the method and DSR's options (alpha, readout, vth_min); each neuron's
v_threshold is where it fires, alpha V^l, and its node metadata `saf_reset_by` what its reset subtracts,
V^l (the trained threshold); the synapse into layer l+1 holds W^(l+1) V^l in float64 (exact), divided
back here exactly. The run rebuilt is a DSRNet (train/methods/dsr/net.py) with those thresholds, so
`saf export --target loihi` folds it as it folds the trained run (export/fold/dsr.py). What does not fit
DSR's neuron (another reset or compare, a gain or leak that differs, a threshold that contradicts its
metadata) is refused in one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from saf.export.nir.conventions import COMPARE_OF_FLAG, DSR_KEY, RESET_BY, Options
from saf.export.nir.errors import NirError
from saf.export.nir.graph import Chain
from saf.export.nir.to_run import Imported, assumed_options, float32_tensors, sha256, walk
from saf.core.neuron_modes import COMPARE_GE, RESET_SUBTRACT
from saf.train.readout import LEAKY_SUM, SPIKE_COUNT


def is_dsr(meta: dict) -> bool:
    """A DSR run saf wrote, by its graph metadata `saf` (meta.saf_meta)."""
    return DSR_KEY in meta


def _reset_by(ch: Chain, node_name: str, alpha: float, theta: float) -> float:
    node = dict(ch.nodes)[node_name]
    v = (getattr(node, "metadata", None) or {}).get(RESET_BY)
    try:
        v = float(np.float32(v))
    except (TypeError, ValueError):
        raise NirError(f"{ch.path}: node '{node_name}' of a DSR graph has no numeric '{RESET_BY}' metadata "
                       f"(the threshold its reset subtracts)") from None
    if not v > 0 or alpha * v != theta:
        raise NirError(f"{ch.path}: node '{node_name}': v_threshold {theta!r} is not alpha {alpha:g} x its "
                       f"'{RESET_BY}' {v!r} (where a DSR neuron fires)")
    return v


def build_dsr(ch: Chain, meta: dict, given: Options) -> Imported:
    """The Imported DSR network of chain `ch` (a file whose `saf` metadata `meta` has a `dsr` entry)."""
    opts, assumed = assumed_options(ch, meta, given)
    d = meta[DSR_KEY]
    alpha = d.get("alpha") if isinstance(d, dict) else None
    if not isinstance(alpha, (int, float)) or not 0 < alpha <= 1 or d.get("readout") not in ("spike", "linear"):
        raise NirError(f"{ch.path}: graph metadata 'saf' entry '{DSR_KEY}' {d} needs alpha in (0, 1] and readout "
                       f"spike or linear")
    d = dict(d)
    if (opts.reset, COMPARE_OF_FLAG[opts.compare]) != (RESET_SUBTRACT, COMPARE_GE):
        raise NirError(f"{ch.path}: a DSR network subtracts its threshold and fires at >=; --reset {opts.reset} "
                       f"--compare {opts.compare} is not that neuron")
    g = walk(ch, float(opts.dt))
    if ch.recurrent:
        raise NirError(f"{ch.path}: recurrent synapse '{ch.recurrent[0][0]}': a DSR network has no recurrent "
                       f"connections")
    spk = [l for l in g["layers"] if "neuron" in l]
    lam = spk[0]["neuron"].lam
    tensors, layers, V, carry = {}, [], [], 1.0
    for l in g["layers"]:
        if "neuron" not in l:
            layers.append(l)
            continue
        n = l["neuron"]
        if n.syn:
            raise NirError(f"{ch.path}: node '{l['name']}': its synaptic current decays by {n.syn:g} per step; a DSR "
                           f"neuron has no synaptic current (CubaLIF needs tau_syn = dt)")
        if n.lam != lam or n.gain != 1.0:
            raise NirError(f"{ch.path}: node '{l['name']}': leak {n.lam:g} and input gain {n.gain:g}; a DSR network "
                           f"has one leak ({lam:g}) and gain 1")
        v = _reset_by(ch, l["name"], float(alpha), n.theta)
        i = len(V)
        tensors[f"blocks.{i}.weight"], tensors[f"blocks.{i}.bias"] = l["w"] / carry, l["b"]
        V.append(v)
        carry = v
        layers.append({k: x for k, x in l.items() if k not in ("w", "b", "neuron", "name")})
    readout = SPIKE_COUNT if d["readout"] == "spike" else LEAKY_SUM
    ro, rn = g["readout"], g["readout"].get("neuron")
    if (1.0 if rn is None else rn.lam) != readout.leak(lam) or (rn is not None and rn.gain != 1.0):
        raise NirError(f"{ch.path}: the readout after '{ro['name']}' does not integrate with leak {readout.leak(lam):g} "
                       f"and gain 1, as DSR's {readout.name} readout does")
    tensors["readout.weight"] = ro["w"] / (1.0 if readout is SPIKE_COUNT else carry)
    tensors["readout.bias"] = ro["b"]
    tensors["vth"] = np.array(V)
    spec = {"name": "nir-" + Path(ch.path).stem, "input_shape": list(g["input_shape"]),
            "num_classes": int(ro["w"].shape[0]), "neuron": {"lam": lam, "theta": 1.0},
            "weight_standardization": False, "T": int(opts.T), "layers": layers, DSR_KEY: d,
            "source": {"format": "nir", "file": Path(ch.path).name, "sha256": sha256(ch.path),
                       "dt": float(opts.dt), "encoder": opts.encoder, "assumed": assumed}}
    return Imported(spec, float32_tensors(ch, tensors), readout.name, opts, assumed)
