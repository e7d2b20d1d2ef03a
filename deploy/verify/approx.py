"""`saf verify` on a bundle exported with --approximate (export/pipeline/fit.py): the deployed integer
LIF network is NOT EXACT against the SAF training form (its decays truncate), so besides the exact
comparison of the integer LIF forms among themselves (verify's pair rules, unchanged), verify
measures how far the deployed network is from the trained float model, as FP's dt table does:

  spike agreement   per spiking layer, the fraction of (sample, step, neuron) where the deployed form
                    (the first integer LIF backend verify ran, on every sample it ran) and the float
                    model (the bundle's source.safetensors fed x_q / input_scale, in its SAF form, or
                    its LIF form where the SAF form is not defined: a reset other than subtract, a
                    compare other than >=, a synaptic current, as imported NIR nets have; float_form)
                    both spike or both stay silent; with the spike counts of each
  pred. agreement   fraction of samples with the same argmax
  accuracy          float and deployed, and the change (with labels)
A measurement: it never makes verify fail. The float model is a different network (float weights);
the comparison is made on the same quantized inputs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from saf.deploy.backends.registry import BACKENDS, run_spec
from saf.deploy.backends.spec import BackendError, Form


def is_approximate(bundle) -> bool:
    return bool(bundle.graph.meta.get("approximate"))


def float_backend(graph) -> str:
    """The float backend that computes the network: saf-float where its SAF form is defined, else lif-float."""
    return "lif-float" if BACKENDS["saf-float"].refuses(graph) else "saf-float"


def approx_section(bundle, xq: np.ndarray, labels: Optional[np.ndarray], results: dict, specs: list,
                   chunk: Optional[int] = None) -> dict:
    """The agreement table of the deployed form with the float model (module docstring), both forms run
    again chunk samples at a time (verify keeps no spike trains), counts added up over the chunks."""
    lif = [s.name for s in specs if s.form is Form.LIF and s.covered and s.name in results]
    out = {"why": bundle.graph.meta["approximate"].get("why", ""), "deployed": None, "layers": [],
           "unavailable": ""}
    if not lif:
        out["unavailable"] = "no integer LIF backend ran"
        return out
    dep = max(lif, key=lambda n: len(results[n].readout))     # the one that ran the most samples
    form = float_backend(bundle.graph)
    r0, f0 = results[dep], results.get(form)
    n = len(r0.readout)
    whole = getattr(r0, "spikes", None) is not None           # a whole run given (library callers): as it is
    chunk = n if whole or not chunk else chunk
    counts, rd, rf = 0, [], []               # per layer: agreeing cells, spikes deployed, spikes float, cells
    for start in range(0, n, chunk):                          # else both forms again, a chunk at a time
        x = xq[start:min(n, start + chunk)]
        try:
            r = r0 if whole else run_spec(next(s for s in specs if s.name == dep), bundle, x, record_spikes=True)
            fl = f0 if whole and getattr(f0, "spikes", None) is not None else \
                run_spec(BACKENDS[form], bundle, x, record_spikes=True)
        except BackendError as e:
            out["unavailable"] = str(e)
            return out
        m = min(len(x), len(r.readout), len(fl.readout))
        ab = [(np.asarray(a[:m], bool), np.asarray(b[:m], bool)) for a, b in zip(r.spikes, fl.spikes)]
        counts = counts + np.array([[(a == b).sum(), a.sum(), b.sum(), a.size] for a, b in ab], np.int64)
        rd.append(r.readout[:m])
        rf.append(fl.readout[:m])
    rd, rf = np.concatenate(rd), np.concatenate(rf)
    n = len(rd)
    out.update(deployed=dep, float_form=form, samples=n)
    for name, (a, d, f, t) in zip([l.name for l in bundle.graph.spiking_layers], counts.tolist()):
        out["layers"].append({"layer": name, "agreement": a / t if t else float("nan"), "spikes_deployed": d,
                              "spikes_float": f, "total": t})
    pd, pf = rd.argmax(1), rf.argmax(1)
    out["prediction_agreement"] = float((pd == pf).mean())
    if labels is not None:
        y = np.asarray(labels)[:n]
        out["float_accuracy"], out["deployed_accuracy"] = float((pf == y).mean()), float((pd == y).mean())
        out["accuracy_change"] = out["deployed_accuracy"] - out["float_accuracy"]
    return out


def format_approx(a: dict) -> list:
    lines = [f"approximate bundle (NOT EXACT: {a['why'][:160]}): agreement with the float model (a measurement)"]
    if a["unavailable"]:
        return lines + [f"  not measured: {a['unavailable']}"]
    lines.append(f"  {a['deployed']} vs {a['float_form']} on {a['samples']} samples, same quantized inputs")
    lines.append(f"  {'layer':<12} {'spike agreement':>16} {'spikes deployed':>16} {'spikes float':>13}")
    for l in a["layers"]:
        lines.append(f"  {l['layer']:<12} {l['agreement']:>16.4%} {l['spikes_deployed']:>16,} {l['spikes_float']:>13,}")
    acc = ""
    if "float_accuracy" in a:
        acc = (f"; accuracy float {a['float_accuracy']:.4f} -> deployed {a['deployed_accuracy']:.4f} "
               f"({a['accuracy_change']:+.4f})")
    lines.append(f"  same prediction {a['prediction_agreement']:.2%}{acc}")
    return lines
