"""How far a NOT EXACT bundle's deployed integer LIF form drifts from the trained float model, measured by
`saf export` on the calibration samples and kept in the manifest (key "drift"), so `saf verify` prints the
same table; and what would make such a network exact.

  spike agreement   per spiking layer, the fraction of (sample, step, neuron) where the deployed form (the
                    integer LIF form the caller runs: the emulator, from deploy/) and the float model in its
                    LIF form (same reset and compare as deployed, fed x_q / input_scale: the same quantized
                    inputs) both spike or both stay silent, with each form's spike count
  same prediction   fraction of samples with the same argmax of the readout
A measurement, not a proof: the float model has float weights and an untruncated leak, so the table shows
the drift of both (weight quantization and the 12-bit truncating decay) together. The forms run
`chunk` samples at a time; only counts are kept.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from saf.export.ir import DECAY_ONE, STATE_MAX, Graph, decay_for, dyadic_exponent

DRIFT_CHUNK = 256          # samples per run of both forms (the spike trains of one chunk in memory)


def drift_table(net, graph: Graph, x: np.ndarray, lif_run: Callable, where: str,
                chunk: int = DRIFT_CHUNK) -> dict:
    """The table (module docstring) on the float inputs x [N, ...] (normalized as in training).
    lif_run(graph, xq) -> BackendResult with spikes (the deployed integer LIF form). where: what x is."""
    import torch

    xq = graph.quantize_input(np.asarray(x))
    names = [l.name for l in graph.spiking_layers]
    counts = np.zeros((len(names), 4), np.int64)   # per layer: equal cells, spikes deployed, spikes float, cells
    same, n = 0, len(xq)
    for start in range(0, n, chunk):
        xc = xq[start:start + chunk]
        dep = lif_run(graph, xc)
        total, recs = net.infer(torch.from_numpy(xc.astype(np.float64) / graph.input_scale), graph.T, "lif",
                                record=True)
        for l, a in enumerate(dep.spikes):
            f = np.stack([r.spikes[l].flatten(1).numpy() > 0.5 for r in recs], axis=1)
            a = np.asarray(a, bool)
            counts[l] += [int((a == f).sum()), int(a.sum()), int(f.sum()), a.size]
        same += int((dep.readout.argmax(1) == total.numpy().argmax(1)).sum())
    layers = [{"layer": nm, "agreement": e / t if t else float("nan"), "spikes_deployed": d, "spikes_float": f,
               "total": t} for nm, (e, d, f, t) in zip(names, counts.tolist())]
    return {"samples": int(n), "inputs": where, "deployed_form": "integer LIF (emulator)",
            "float_form": "float LIF form of the trained model", "layers": layers,
            "prediction_agreement": same / n if n else float("nan")}


def format_drift(d: dict, advice: Optional[str] = None, indent: str = "  ") -> list:
    """The table as lines (export and verify print the same), with exact_advice's clause when given."""
    lines = [f"drift of the deployed integer LIF form from the float model ({d['float_form']}), "
             f"{d['samples']} {d['inputs']}, same quantized inputs (a measurement):",
             f"{indent}{'layer':<12} {'spike agreement':>16} {'spikes deployed':>16} {'spikes float':>13}"]
    for l in d["layers"]:
        lines.append(f"{indent}{l['layer']:<12} {l['agreement']:>16.4%} {l['spikes_deployed']:>16,} "
                     f"{l['spikes_float']:>13,}")
    lines.append(f"{indent}same prediction {d['prediction_agreement']:.2%}")
    if advice:
        lines.append(f"{indent}what would make it exact: {advice}")
    return lines


def dyadic_leaks(lam: float, T: int) -> tuple:
    """(below, above): the dyadic leaks lam' = 2^-k (1 included) nearest to lam from below and above whose
    12-bit decay is exact with the fractional bits F = k (T - 1) the 24-bit state can hold (export/quantize.py:
    2^F <= STATE_MAX >> 4); None where there is none."""
    ok = [2.0 ** -k for k in range(0, 13) if (1 << (k * (int(T) - 1))) <= STATE_MAX >> 4
          and dyadic_exponent((DECAY_ONE - decay_for(2.0 ** -k)) / DECAY_ONE) == k]
    below = max((v for v in ok if v < lam), default=None)
    above = min((v for v in ok if v > lam), default=None)
    return below, above


def exact_advice(lam: float, T: int) -> str:
    """What would make a network with a non-dyadic leak lam exact (one clause, for the note and the manifest)."""
    below, above = dyadic_leaks(lam, T)
    near = " or ".join(f"{v:g}" + (" (no leak, IF)" if v == 1 else f" (2^-{dyadic_exponent(v)})")
                       for v in (below, above) if v is not None)
    return (f"a dyadic leak: beta = 2^-k or 1, nearest to {lam:g}: {near} at T = {T} (the 12-bit decay then "
            f"truncates nothing); or training the network on the deployment grid, with its integer decay "
            f"(`saf finetune RUN --deploy-target loihi --out NEW`, docs/grid.md)")
