"""The exactness certificate: does the integer LIF form (Lava, emulator, ONNX) compute exactly the
integer SAF form (the training form on the quantized weights)? Derived from a Graph alone, so
`saf verify` re-derives it from a bundle's weights instead of trusting what export wrote.

Conditions (DESIGN.md sec. 3), each a named check with a one-line reason:
- leak:        the 12-bit decay is lam_q = 2^-k exactly (a non-dyadic lam truncates at every step);
- frac_bits:   F >= k (T - 1) per layer, so every decay over T steps drops no bit;
- state_24bit: worst-case |V| (state_bound.py) <= 2^23 - 1 per layer, and TH << F fits too;
- readout:     the readout integrator's worst case |R[T]| fits the 24-bit state of a compartment;
- current_reg (targets whose neuron has one, hw_targets Target.current_register_bits): the
               synaptic input enters a register u as (W s_in + feedback) << frac_bits, which WRAPS
               (Lava/Loihi: 24 bits), so its worst case must stay <= 2^23 - 1 per spiking layer. The
               bias is not in u: Loihi adds it to v as bias_mant << bias_exp;
- tie:         one threshold-tie convention everywhere: fire when V >= TH << F (SAF: H(0) = 1).
Also informational: whether the trained lam is representable (lam_q == lam) and whether the input
quantization was lossless; these concern float-vs-integer accuracy, not LIF-vs-SAF exactness.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .ir import DECAY_ONE, STATE_MAX, Graph, dyadic_exponent
from .onnx_exact import abs_row_sum_max
from .state_bound import layer_current_bound, state_bound

TIE_RULE = "fire when V >= TH << F (SAF: H(0) = 1) in every form"


@dataclass
class Check:
    check: str
    layer: str
    ok: bool
    detail: str


@dataclass
class Certificate:
    exact: bool
    checks: list = field(default_factory=list)
    info: list = field(default_factory=list)

    @property
    def reasons(self) -> list:
        return [f"{c.check} ({c.layer}): {c.detail}" for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"exact": self.exact, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks],
                "info": list(self.info)}

    def format(self) -> str:
        head = "certificate: EXACT (LIF form == SAF form bit for bit)" if self.exact else \
            "certificate: NOT EXACT -- " + "; ".join(self.reasons)
        rows = [f"  [{'ok' if c.ok else 'NO'}] {c.check:<12} {c.layer:<10} {c.detail}" for c in self.checks]
        return "\n".join([head, *rows, *[f"  note: {i}" for i in self.info]])


def certify(graph: Graph) -> Certificate:
    checks, info = [], []
    T, D = int(graph.T), int(graph.decay)
    lam_q = graph.lam_q
    k = dyadic_exponent(lam_q)
    if k is None:
        checks.append(Check("leak", "all", False,
                            f"lam_q = {DECAY_ONE - D}/4096 = {lam_q:.6g} is not a power of two: the 12-bit "
                            f"decay truncates every step, so the LIF state drifts from the exact SAF form"))
    else:
        checks.append(Check("leak", "all", True, f"lam_q = 2^-{k} (decay D = {D}): dyadic"))
    if abs(lam_q - graph.lam) > 0:
        info.append(f"trained lam {graph.lam} is stored as {lam_q:.6g} on the 12-bit decay (float-vs-integer "
                    f"accuracy may change; LIF-vs-SAF exactness is about lam_q)")
    x_in = graph.input_max
    reg = _current_register(graph)
    for i, layer in enumerate(graph.spiking_layers):
        F = int(layer.frac_bits)
        if k is not None:
            need = k * (T - 1)
            checks.append(Check("frac_bits", layer.name, F >= need,
                                f"F = {F} {'>=' if F >= need else '<'} k(T-1) = {k}*{T - 1} = {need}"
                                + ("" if F >= need else ": the last decays drop bits")))
        cur = layer_current_bound(layer.weight, layer.bias, [f.weight for f in graph.feedback_into(i)],
                                  x_in if i == 0 else 1, graph.input_signed and i == 0)
        v = state_bound(cur, F, D, T)
        th = int(layer.threshold) << F
        ok = v <= STATE_MAX and 0 < th <= STATE_MAX
        detail = f"worst |V| = {v:,} {'<=' if v <= STATE_MAX else '>'} 2^23-1 = {STATE_MAX:,}; TH<<F = {th:,}"
        if th <= 0:
            detail += " (threshold must be positive)"
        elif th > STATE_MAX:
            detail += " exceeds the 24-bit state (the neuron could never fire)"
        elif v > STATE_MAX:
            detail += ": the state can saturate where the SAF form does not"
        checks.append(Check("state_24bit", layer.name, ok, detail))
        if reg is not None:
            checks.append(current_register_check(graph, i, reg))
    ro = graph.readout
    r = T * (abs_row_sum_max(ro.weight) + int(abs(ro.bias).max(initial=0)))
    checks.append(Check("readout", ro.name, r <= STATE_MAX,
                        f"worst |R[T]| = {r:,} {'<=' if r <= STATE_MAX else '>'} 2^23-1"))
    checks.append(Check("tie", "all", True, TIE_RULE))
    if graph.meta.get("input_exact") is False:
        info.append(f"input quantized with scale {graph.input_scale:.6g} to {graph.input_bits} bits (lossy)")
    return Certificate(all(c.ok for c in checks), checks, info)


def _current_register(graph: Graph):
    """(register bits, shift) of the graph's target neuron's input register, or None."""
    from saf.hw_targets import TargetError, get_target

    try:
        t = get_target(graph.target)
    except TargetError:
        return None
    return None if t.current_register_bits is None else (int(t.current_register_bits), int(t.frac_bits))


def current_register_check(graph: Graph, i: int, reg: tuple) -> Check:
    """Spiking layer i: worst |W s_in + sum W_fb s_fb| << shift must not wrap the signed register."""
    bits, shift = reg
    layer = graph.spiking_layers[i]
    a = layer_current_bound(layer.weight, np.zeros(1, np.int64), [f.weight for f in graph.feedback_into(i)],
                            graph.input_max if i == 0 else 1, graph.input_signed and i == 0)
    top = (1 << (bits - 1)) - 1
    u = a << shift
    ok = u <= top
    return Check("current_reg", layer.name, ok,
                 f"worst |W s_in| << {shift} = {u:,} {'<=' if ok else '>'} 2^{bits - 1}-1 = {top:,}"
                 + ("" if ok else f": the {bits}-bit input register u wraps (the LIF form does not)"))
