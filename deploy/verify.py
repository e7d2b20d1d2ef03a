"""`saf verify`: static certificate (re-derived from the bundle's weights) + dynamic comparison of
every layer's spike train at every time step across backends, + optional golden regression.

Which pairs must match exactly:
- two integer LIF implementations (emulator, ONNX, Lava) always: they implement one arithmetic;
- the SAF form on integer weights (saf-int) against any LIF implementation when the certificate
  says exact; otherwise their measured spike mismatch rate is reported against `mismatch_bound`.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from saf.export.certificate import certify

from .backends import FLOAT_BACKENDS, LIF_FORM, Bundle, run_backend
from .compare import accuracy, compare_pair, firing_rates
from .golden import compare_golden, golden_record, inputs_hash, read_golden, write_golden
from .model_listing import format_models


@dataclass
class VerifyReport:
    bundle: str
    certificate: dict
    certificate_matches_manifest: bool
    samples: dict                      # backend -> samples run
    accuracy: dict                     # backend -> accuracy
    firing_rates: dict                 # backend -> per-layer rates
    seconds: dict
    pairs: list = field(default_factory=list)
    golden: list = field(default_factory=list)
    float_to_quantized: Optional[dict] = None
    mismatch_bound: float = 0.0
    ok: bool = True
    failures: list = field(default_factory=list)
    layer_names: list = field(default_factory=list)
    fault: Optional[str] = None
    models: dict = field(default_factory=dict)     # Lava backend -> per layer, the classes that ran

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _expected_exact(a: str, b: str, exact: bool) -> bool:
    lif = lambda n: any(n == f or n.startswith(f + "-") or n.startswith(f + "[") for f in LIF_FORM)  # noqa: E731
    if lif(a) and lif(b):
        return True
    return exact


def verify(bundle: Bundle, xq: np.ndarray, labels: Optional[np.ndarray], backends: list,
           lava_limit: int = 50, fault: Optional[str] = None, golden_dir=None, update_golden: bool = False,
           mismatch_bound: float = 0.01, progress: bool = False, dataset: str = "") -> VerifyReport:
    g = bundle.graph
    cert = certify(g)
    stored = bundle.manifest.get("certificate", {}).get("exact")
    names = [l.name for l in g.spiking_layers]
    results, seconds = {}, {}
    for name in backends:
        x = xq[:lava_limit] if name in ("lava", "lava-stock") else xq
        t0 = time.perf_counter()
        r = run_backend(name, bundle, x, record_spikes=True, progress=progress)
        seconds[name] = time.perf_counter() - t0
        results[r.backend] = r
    if fault:
        r = run_backend("emulator", bundle, xq, fault=fault)
        results[r.backend] = r
        seconds[r.backend] = r.seconds
    rep = VerifyReport(bundle=str(bundle.path), certificate=cert.to_dict(),
                       certificate_matches_manifest=(stored is None or stored == cert.exact),
                       samples={k: int(len(r.readout)) for k, r in results.items()},
                       accuracy={k: accuracy(r, labels) for k, r in results.items()} if labels is not None else {},
                       firing_rates={k: firing_rates(r) for k, r in results.items()}, seconds=seconds,
                       mismatch_bound=mismatch_bound, layer_names=names, fault=fault,
                       models={k: r.info["models"] for k, r in results.items() if "models" in r.info})
    if not rep.certificate_matches_manifest:
        rep.failures.append(f"the manifest's certificate says exact={stored}, re-derived exact={cert.exact}")
    ints = [k for k in results if k not in FLOAT_BACKENDS]
    for a, b in itertools.combinations(ints, 2):
        p = compare_pair(results[a], results[b], names)
        p["expected_exact"] = _expected_exact(a, b, cert.exact)
        p["bound"] = 0.0 if p["expected_exact"] else mismatch_bound
        p["ok"] = (p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0) if p["expected_exact"] \
            else p["mismatch_rate"] <= mismatch_bound
        if p["first"] is not None and p["first"]["t"] is not None:
            _add_potentials(p, bundle, xq, fault)
        rep.pairs.append(p)
        if not p["ok"]:
            rep.failures.append(_pair_failure(p))
    if "saf-float" in results and "saf-int" in results and labels is not None:
        n = min(len(results["saf-float"].readout), len(results["saf-int"].readout))
        fa, qa = accuracy(results["saf-float"], labels[:n]), accuracy(results["saf-int"], labels[:n])
        rep.float_to_quantized = {"float_accuracy": fa, "quantized_accuracy": qa, "change": qa - fa, "samples": n,
                                  "prediction_agreement": float((results["saf-float"].predictions[:n]
                                                                 == results["saf-int"].predictions[:n]).mean())}
    if golden_dir is not None:
        h = inputs_hash(xq)
        ref = results.get("saf-int") or results[ints[0]]
        if update_golden:
            write_golden(golden_dir, golden_record(ref, dataset, h))
        gold = read_golden(golden_dir)
        for k in ints:
            d = compare_golden(gold, results[k], h)   # the input hash is checked on full-length runs
            rep.golden.append(d)
            if not d["ok"]:
                rep.failures.append(f"golden drift ({k}): {d['reason']}")
    rep.ok = not rep.failures
    return rep


def _add_potentials(p: dict, bundle: Bundle, xq: np.ndarray, fault: Optional[str]) -> None:
    from .backends import potentials_for

    f = p["first"]
    one = xq[f["sample"]:f["sample"] + 1]
    for side in ("a", "b"):
        name = p[side]
        base, fl = name.split("[")[0], (name.split("[")[1].rstrip("]") if "[" in name else None)
        label, pots = potentials_for(base, bundle, one, fault=fl)
        f[f"potential_{side}"] = int(pots[f["layer_index"]][0, f["t"] - 1, f["neuron"]])
        f[f"potential_{side}_source"] = label
    f["threshold_state"] = int(bundle.graph.layers[f["layer_index"]].threshold) << \
        int(bundle.graph.layers[f["layer_index"]].frac_bits)


def _pair_failure(p: dict) -> str:
    f = p["first"]
    where = ""
    if f is not None and f["t"] is not None:
        where = (f"; first at sample {f['sample']}, layer {f['layer']}, t={f['t']}, neuron {f['neuron']} "
                 f"({p['a']} spike={int(f['spike_a'])} V={f.get('potential_a')}, "
                 f"{p['b']} spike={int(f['spike_b'])} V={f.get('potential_b')}, TH<<F={f.get('threshold_state')})")
    elif f is not None:
        where = f"; first at sample {f['sample']}, readout class {f['neuron']}"
    kind = "must be identical" if p["expected_exact"] else \
        f"mismatch rate {p['mismatch_rate']:.2e} > bound {p['bound']:.2e}"
    return (f"{p['a']} vs {p['b']} ({kind}): {p['spike_mismatches']}/{p['spikes_total']} spikes and "
            f"{p['readout_mismatches']}/{p['readout_total']} readouts differ{where}")


def format_report(rep: VerifyReport) -> str:
    c = rep.certificate
    lines = ["certificate (re-derived from the bundle's weights): " + ("EXACT" if c["exact"] else
                                                                      "NOT EXACT -- " + "; ".join(c["reasons"]))]
    for ch in c["checks"]:
        lines.append(f"  [{'ok' if ch['ok'] else 'NO'}] {ch['check']:<12} {ch['layer']:<10} {ch['detail']}")
    lines.append("backends:")
    for k, n in rep.samples.items():
        acc = rep.accuracy.get(k)
        rates = " ".join(f"{r:.3f}" for r in rep.firing_rates[k])
        lines.append(f"  {k:<18} {n:>5} samples  accuracy {acc:.4f}  firing rates [{rates}]"
                     if acc is not None else f"  {k:<18} {n:>5} samples")
    if rep.float_to_quantized:
        f = rep.float_to_quantized
        lines.append(f"float -> quantized accuracy: {f['float_accuracy']:.4f} -> {f['quantized_accuracy']:.4f} "
                     f"({f['change']:+.4f}), same prediction {f['prediction_agreement']:.2%}")
    for k, m in rep.models.items():
        lines += [f"{k}: Lava Processes / ProcessModels that ran, per layer"] + format_models(m, "    ")
    lines.append("spike trains, every layer and time step:")
    for p in rep.pairs:
        per = ", ".join(f"{l['layer']} {l['mismatches']}/{l['total']}" for l in p["layers"])
        tag = "exact required" if p["expected_exact"] else f"bound {rep.mismatch_bound:.0e}"
        lines.append(f"  {'OK  ' if p['ok'] else 'FAIL'} {p['a']} vs {p['b']} on {p['samples']}: "
                     f"{p['spike_mismatches']} mismatching spikes [{per}], readout {p['readout_mismatches']} "
                     f"differ ({tag})")
    for d in rep.golden:
        lines.append(f"  golden {d['backend']}: " + ("no drift" if d["ok"] else d["reason"]))
    lines += [f"FAIL: {f}" for f in rep.failures]
    lines.append("verify: PASS" if rep.ok else "verify: FAIL")
    return "\n".join(lines)
