"""A NIR graph that ends in a spiking node (IF, LIF or CubaLIF before its Output: snnTorch's tutorial classifier
Linear -> Leaky -> Linear -> Leaky, a Sinabs CNN ending in IAF, a recurrent CubaLIF net) and the readout saf
deploys on it (`saf import --readout count|membrane`, docs/nir.md).

count (the default): the last layer stays a spiking layer like every other, and the readout is the identity on
  its spikes (weights I, bias 0, no leak; train/readout.py COUNT): R[k] = sum_{t=1..T} s_out[t][k], the number of
  spikes output neuron k fired in the T steps. Prediction = argmax R with the lowest index among tied counts,
  torch's argmax, i.e. snnTorch's spk_rec.sum(0).argmax(1). A conv output layer's neurons are counted per
  position, flattened in C order. Every deployed form computes R exactly (an identity readout of integers).
membrane: the last layer's synapse becomes saf's readout integrator, i.e. the membrane potential that layer
  would hold with its threshold removed (it never fires, so it never resets):
      R = v[T],   v[t] = lam v[t-1] + g (W s[t] + b),   v[0] = 0
  with the layer's own leak lam and input gain g (lam < 1: the "leaky-sum" readout, lam = 1: "sum"). This is
  not snnTorch's mem of a layer that fires (that one is reset by its spikes). Refused in one line where the
  integrator cannot hold the layer: a conv synapse, a synaptic current that outlives its step (CubaLIF with
  tau_syn > dt), a recurrent synapse into or out of it, or no spiking layer in front of it.
"""
from __future__ import annotations

import numpy as np

from saf.export.nir.errors import NirError
from saf.export.nir.graph import Chain, kind
from saf.export.nir.neurons import Neuron

COUNT, MEMBRANE = "count", "membrane"
READOUT_CHOICES = (COUNT, MEMBRANE)
COUNT_CLAUSE = ("--readout count (the graph ends in spiking node '{name}' ({kind}): saf reads its spike counts "
                "over T, prediction = the most spikes, lowest index on ties, as snnTorch's spk_rec.sum(0).argmax(1); "
                "--readout membrane reads its membrane without threshold instead)")

MEMBRANE_CLAUSE = ("--readout membrane: the last node '{name}' ({kind}) read as its membrane without threshold, "
                   "R = v[T], v[t] = lam v[t-1] + g (W s[t] + b), v[0] = 0 (it never fires or resets)")


def stated(ch: Chain, choice) -> str:
    """What a --readout given on the command line means for this graph (the import prints it), "" for none."""
    name, node = ch.nodes[-2]
    if choice == MEMBRANE:
        return MEMBRANE_CLAUSE.format(name=name, kind=kind(node))
    return COUNT_CLAUSE.format(name=name, kind=kind(node)).split(";")[0] + ")" if choice == COUNT else ""


def check_choice(ch: Chain, g: dict, choice) -> None:
    """--readout given for a graph whose readout is a synapse (it would be ignored): refused in one line."""
    if choice is None:
        return
    if choice not in READOUT_CHOICES:
        raise NirError(f"--readout {choice}: expected one of {', '.join(READOUT_CHOICES)}")
    if g["readout"] is not None:
        name, node = ch.nodes[-2]
        raise NirError(f"--readout {choice}: {ch.path} ends in '{name}' ({kind(node)}), not a spiking node; its "
                       f"readout is that synapse (--readout applies to a graph ending in IF, LIF or CubaLIF)")


def spiking_output(ch: Chain, g: dict, choice, written: dict) -> tuple:
    """(readout kind name or "" (build() decides from the neuron), clause assumed or "") for a walk() result `g`
    whose chain ends in a spiking node (g["readout"] None); `g` is rewritten in place so that build() reads the
    chosen readout. written: the file's saf metadata ({} for a file saf did not write)."""
    check_choice(ch, g, choice)
    name, node = ch.nodes[-2]
    clause = ""
    if choice is None:
        choice = COUNT
        if written.get("readout") != COUNT:
            clause = COUNT_CLAUSE.format(name=name, kind=kind(node))
    last = g["layers"][-1]
    if choice == COUNT:
        n = int(np.prod(g["shape"]))
        g["readout"] = {"name": name, "layer": {"type": "linear", "out": n}, "w": np.eye(n), "b": np.zeros(n),
                        "shape": (n,)}
        return COUNT, clause
    _membrane(ch, g, name, node)
    return "", clause


def _membrane(ch: Chain, g: dict, name: str, node) -> None:
    last = g["layers"][-1]
    why = ""
    if last["type"] != "linear":
        why = "its synapse is a Conv2d, and saf's readout integrator is dense"
    elif last["neuron"].syn:
        why = f"its synaptic current decays by {last['neuron'].syn:g} per step, a state saf's readout does not hold"
    elif any(name in (src, dst) for _, _, src, dst in ch.recurrent):
        why = "a recurrent synapse enters or leaves it, and a readout has none"
    elif len(g["index"]) < 2:
        why = "no spiking layer would be left in front of it"
    if why:
        raise NirError(f"{ch.path}: --readout membrane: the last layer '{name}' ({kind(node)}) cannot be read as a "
                       f"membrane: {why}; use --readout count")
    g["layers"].pop()
    del g["index"][name]
    n = last["neuron"]
    g["readout"] = {"name": name, "layer": {"type": "linear", "out": last["out"]}, "w": last["w"], "b": last["b"],
                    "shape": (last["out"],), "neuron": Neuron(n.lam, n.gain)}
