"""The certificate rows of a grid-trained run (issue 28): the bundle equals the trained model, because the
trained model IS the integer network and its forward computes the deployed arithmetic exactly.

For such a run (Graph.meta["trained_on_grid"]) the statement to prove is "deployed network == trained model",
not "LIF form == float SAF form", so certify() (certificate.py) requires these rows instead of the SAF rows:
- on_grid (export/pipeline/grid.py on_grid_check): the graph's integers are the checkpoint's grid, recomputed
  from its float weights through the training forward's own rounding (train/grid/forward.py grid_weights);
- grid_rules: the forward decays with the IR's truncating 12-bit decay and saturates with the 24-bit
  saturation, one definition each (train/grid/rules.py): the forward's decay is the IR's function object,
  and its decay and saturation, run on the probe states (0, +-1, +-(2^12 - 1), +-STATE_MAX, +-(STATE_MAX + 1),
  for each decay the graph uses), equal export/ir.py trunc_decay and clip(+-STATE_MAX);
- exact_sum: every value the forward forms is an integer below 2^m in magnitude, m the mantissa bits of the
  dtype its weights actually have (float64: 53), so every product and partial sum is exact whatever the
  summation order (bound below), and every state it decays in int64 times 4096 stays below 2^63;
- grid_modes: the (compare, reset) the forward runs on each layer is the graph's: the compare measured on
  the forward's own spike function at a tie (0 fires: ">=", else ">"), the reset read where grid_step reads it.
The bound (per spiking layer, |.| the magnitude, in_max the layer's input maximum, Graph.layer_input_max;
a sum-pooled input's count k^2 in_max too): every partial sum of W s_in + B is <= P = sum_j |W_ij| in_max + |B_i|;
the state update adds (P << F) to a decayed saturated state (<= STATE_MAX) and, for "subtract-undecayed",
subtracts TH << F: worst |decay(V') + (P << F) - TH << F| <= STATE_MAX + (P << F) + (TH << F). The readout:
(P_o << F_r) plus its decayed state, <= the certificate's worst |R| (state_bound). Multiplying by 2^F is
exact in binary floating point; the spike's (V - TH << F) / (s 2^F) of an exact integer keeps its sign and
zero, so the compare is exact too.
"""
from __future__ import annotations

import numpy as np

from saf.export.ir import STATE_MAX, Graph, trunc_decay
from saf.export.proof.certificate import GRID_ROWS, Check  # noqa: F401 (GRID_ROWS: the rows made here)
from saf.export.proof.state_bound import layer_current_bound, state_bound
from saf.core.neuron_modes import RESET_SUBTRACT_UNDECAYED

INT64_MAX = (1 << 63) - 1


def _probes() -> np.ndarray:
    edge = [0, 1, (1 << 12) - 1, STATE_MAX, STATE_MAX + 1, 3 << 20]
    return np.array(sorted({s * v for v in edge for s in (1, -1)}), dtype=np.int64)


def grid_rules_check(graph: Graph) -> Check:
    """The forward's decay and saturation are the deployed network's (module docstring)."""
    import torch

    from saf.export import ir
    from saf.train.grid import forward as fw

    bad = []
    if fw.trunc_decay_int is not ir.trunc_decay_int:
        bad.append("the forward's truncating decay is not the IR's function (train/grid/rules.py trunc_decay_int)")
    p = _probes()
    for D in sorted({int(graph.decay), int(graph.readout.decay)}):
        got = fw._decay(torch.from_numpy(p.astype(np.float64)), D).numpy()
        if not np.array_equal(got, trunc_decay(p, D).astype(np.float64)):
            bad.append(f"the forward's decay D = {D} differs from the IR's on the probe states")
    sat = fw.saturate(torch.from_numpy(p.astype(np.float64))).numpy()
    if not np.array_equal(sat, np.clip(p, -STATE_MAX, STATE_MAX).astype(np.float64)):
        bad.append(f"the forward's saturation is not the deployed clip to +-{STATE_MAX:,}")
    if bad:
        return Check("grid_rules", "all", False, "; ".join(bad))
    return Check("grid_rules", "all", True,
                 "the trained forward decays with the IR's truncating 12-bit decay (one function, "
                 "train/grid/rules.py) and saturates V at +-(2^23-1) as the deployed network does: checked on the "
                 f"probe states for D = {sorted({int(graph.decay), int(graph.readout.decay)})}")


def _abs_bound(weight, bias, in_max: int) -> int:
    """max_i sum_j |W_ij| in_max + |B_i|: every partial sum of a row's dot product, any order."""
    return layer_current_bound(np.abs(np.asarray(weight, dtype=np.int64)), np.abs(np.asarray(bias, dtype=np.int64)),
                               (), int(in_max), False)


def exact_sum_checks(graph: Graph, mantissa_bits: int, dtype: str) -> list:
    """One row per spiking layer and the readout: the forward's worst intermediate < 2^mantissa_bits."""
    limit = 1 << int(mantissa_bits)
    rows = []
    for i, layer in enumerate(graph.spiking_layers):
        F = int(layer.frac_bits)
        P = _abs_bound(layer.weight, layer.bias, graph.layer_input_max(i))
        th = int(layer.threshold) << F if layer.reset == RESET_SUBTRACT_UNDECAYED else 0
        worst = max(STATE_MAX + (P << F) + th, graph.layer_input_max(i))
        rows.append(_exact_row(layer.name, worst, limit, mantissa_bits, dtype,
                               f"worst partial sum |W s_in + B| = {P:,}, state update |V'| + (P << {F})"
                               + (" + TH << F" if th else "")))
    ro = graph.readout
    F_r = ro.readout_shift
    P = _abs_bound(ro.weight, ro.bias, ro.pool_gain)
    R = state_bound(layer_current_bound(ro.weight, ro.bias, in_max=ro.pool_gain), F_r, int(ro.decay), int(graph.T))
    row = _exact_row(ro.name, R + (P << F_r), limit, mantissa_bits, dtype,
                     f"worst |W s + B| = {P:,}, readout |R| + (P << {F_r})")
    if row.ok and int(ro.decay) and R * 4096 > INT64_MAX:
        row = Check("exact_sum", ro.name, False, f"worst |R| = {R:,} times the decay's 4096 overflows int64")
    rows.append(row)
    return rows


def _exact_row(name: str, worst: int, limit: int, bits: int, dtype: str, what: str) -> Check:
    ok = worst < limit
    return Check("exact_sum", name, ok,
                 f"{what} = {worst:,} {'<' if ok else '>='} 2^{bits} ({dtype}'s exact integers)"
                 + (": every product and partial sum of the trained forward is exact in any order" if ok else
                    ": the trained forward's sums can round, it may differ from the deployed integers"))


def forward_modes(net) -> list:
    """The (compare, reset) the grid forward runs per spiking layer: the compare measured on its own spike
    function at a tie (V = TH << F: 0 after train/grid/forward.py's scaling), the reset as grid_step reads it."""
    import torch

    out = []
    for l in range(net.n_spiking):
        with torch.no_grad():
            fires = float(net._layer_spike_fn(l)(torch.zeros(1, dtype=torch.float64))[0]) > 0.5
        out.append((">=" if fires else ">", net.modes[l].reset))
    return out


def grid_modes_check(net, graph: Graph) -> Check:
    ran = forward_modes(net)
    layers = graph.spiking_layers
    if len(ran) != len(layers):
        return Check("grid_modes", "all", False, f"the forward runs {len(ran)} spiking layers, the graph has "
                     f"{len(layers)}")
    for (cmp, reset), layer in zip(ran, layers):
        if (cmp, reset) != (layer.compare, layer.reset):
            return Check("grid_modes", layer.name, False,
                         f"the trained forward runs compare '{cmp}', reset '{reset}'; the graph says "
                         f"'{layer.compare}', '{layer.reset}': the deployed neurons are not the trained ones")
    return Check("grid_modes", "all", True, "the trained forward runs each layer's compare (measured at a tie) "
                 "and reset as the graph says: " + ", ".join(f"{c} {r}" for c, r in ran))
