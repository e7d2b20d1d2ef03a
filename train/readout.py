"""The readout the loss saw, a property of the trained model (docs/design.md#readouts).

The readout layer computes o[t] = W_o s_N[t] + b_o every step; a method's loss sees either the plain
sum R = sum_t o[t] (SAF-E, OTTT, BPTT: per-step losses) or the sum leaking with the network's lam,
R = sum_t lam^(T-t) o[t] (SAF-F: its loss is on that sum divided by c[T], which leaves the argmax
unchanged). The checkpoint records which (metadata key "readout"); evaluation and every deployed
form use it: on a neuromorphic target the leaking sum is an integrator R[t] = lam R[t-1] + o[t].
A checkpoint without the record predates it and has the non-leaking readout.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from saf.core.errors import SafError


class ReadoutError(SafError, ValueError):
    """A readout record that cannot be used."""


@dataclass(frozen=True)
class Readout:
    name: str
    leaks_with_lam: bool          # R[t] = lam R[t-1] + o[t] (else R[t] = R[t-1] + o[t])

    def leak(self, lam: float) -> float:
        """The factor R[t-1] is multiplied by each step."""
        return float(lam) if self.leaks_with_lam else 1.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


SUM = Readout("sum", False)
LEAKY_SUM = Readout("leaky-sum", True)
# DSR's spiking output layer: R = sum_t lam^(T-t) s_out[t], the (weighted) spike counts through an
# identity readout; the prediction is the lowest index among tied counts (argmax) in every form
SPIKE_COUNT = Readout("spike_count", True)
# a spiking output layer read by its spike counts, R = sum_t s_out[t], through an identity readout (weights I, bias 0):
# a NIR graph that ends in a spiking node (snnTorch's spk_rec.sum(0)); prediction: the lowest index among tied
# counts (argmax, as torch's), in every form
COUNT = Readout("count", False)
# FP (docs/methods.md#fp-loss-and-readout): the output neuron with the earliest first spike, lowest index on ties (no integrator)
FIRST_SPIKE = Readout("first_spike", False)
READOUTS = {r.name: r for r in (SUM, LEAKY_SUM, SPIKE_COUNT, COUNT, FIRST_SPIKE)}


def readout_from_json(text) -> Readout:
    """The recorded readout; None (an older checkpoint) is the non-leaking sum."""
    if text is None:
        return SUM
    try:
        d = json.loads(text)
        r = READOUTS[d["name"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ReadoutError(f"unknown readout record {text!r} (known: {', '.join(READOUTS)})") from None
    if bool(d.get("leaks_with_lam")) != r.leaks_with_lam:
        raise ReadoutError(f"readout record {text!r} contradicts readout {r.name!r}")
    return r
