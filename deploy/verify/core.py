"""`saf verify`: static certificate (re-derived from the bundle's weights and the compared backends'
declared conventions) + dynamic comparison of every layer's spike train at every time step across
backends (and of the membrane potentials wherever both sides report them), + optional golden
regression, + optional fuzzing beyond the dataset (deploy/verify/fuzz.py).

Which pairs must match exactly (decided from the backends' records, deploy/backends/spec.py):
- two integer LIF implementations the certificate covers (emulator, ONNX CPU, Lava) always: they
  implement one arithmetic;
- the SAF form on integer weights (saf-int) against any covered LIF implementation when the
  certificate says exact;
- otherwise (not exact, or a backend the certificate does not cover, e.g. onnx-cuda) the measured
  spike mismatch rate is reported against `mismatch_bound`.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from saf.export.proof.certificate import certify

from saf.deploy.backends.spec import BackendError, BackendSpec, Form, resolve_backends
from saf.deploy.backends.registry import Bundle, fault_backend, run_spec
from saf.deploy.verify.compare import accuracy, compare_pair, compare_potentials, firing_rates
from saf.deploy.verify.golden import compare_golden, golden_record, inputs_hash, read_golden, write_golden
from saf.deploy.lava.model_listing import format_models

POTENTIAL_BUDGET = 1 << 25          # int64 potentials recorded per backend and input set (256 MiB)


@dataclass
class VerifyReport:
    bundle: str
    certificate: dict
    certificate_matches_manifest: bool
    samples: dict                      # backend -> samples run
    accuracy: dict                     # backend -> accuracy
    firing_rates: dict                 # backend -> per-layer rates
    seconds: dict
    backends: dict = field(default_factory=dict)   # backend -> its record (form, convention, covered)
    pairs: list = field(default_factory=list)
    golden: list = field(default_factory=list)
    float_to_quantized: Optional[dict] = None
    mismatch_bound: float = 0.0
    ok: bool = True
    failures: list = field(default_factory=list)
    layer_names: list = field(default_factory=list)
    fault: Optional[str] = None
    fuzz: Optional[dict] = None
    models: dict = field(default_factory=dict)     # Lava backend -> per layer, the classes that ran
    fp: Optional[dict] = None          # FP bundles: the dt table against the continuous model (fp_verify.py)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def describe(spec: BackendSpec) -> dict:
    return {"form": spec.form.value, "reports_potentials": spec.reports_potentials,
            "convention": str(spec.convention) if spec.convention else None, "covered": spec.covered,
            "subset": spec.subset, "description": spec.description}


def backend_specs(backends, fault: Optional[str] = None) -> list:
    """Records for a backend list (names are resolved and checked: >= 2 distinct integer backends),
    plus the faulty emulator when `fault` is given."""
    specs = resolve_backends(backends) if all(isinstance(b, str) for b in backends) else list(backends)
    return specs + ([fault_backend(fault)] if fault else [])


def expected_exact(a: BackendSpec, b: BackendSpec, exact: bool) -> bool:
    if not (a.covered and b.covered) or a.convention != b.convention:
        return False
    if a.form is Form.LIF and b.form is Form.LIF:
        return True
    return exact


def run_all(bundle: Bundle, xq: np.ndarray, specs: list, lava_limit: int, progress: bool) -> tuple:
    """Every backend on xq (subset backends on the first lava_limit samples). Backends that report
    potentials record them on as many samples as POTENTIAL_BUDGET allows."""
    g = bundle.graph
    per_sample = g.T * sum(l.n_out for l in g.spiking_layers)
    results, seconds = {}, {}
    for spec in specs:
        x = xq[:lava_limit] if spec.subset else xq
        if len(x) < 1:
            raise BackendError(f"{spec.name}: no samples to compare (check --limit / --lava-limit / --inputs)")
        k = min(len(x), max(1, POTENTIAL_BUDGET // per_sample)) if spec.reports_potentials else 0
        t0 = time.perf_counter()
        r = run_spec(spec, bundle, x, record_spikes=True, record_potentials=(k == len(x)), progress=progress)
        if 0 < k < len(x):
            r.potentials = run_spec(spec, bundle, x[:k], record_spikes=False, record_potentials=True).potentials
        seconds[spec.name] = time.perf_counter() - t0
        results[spec.name] = r
    return results, seconds


def _own_potential(spec: BackendSpec, r, bundle: Bundle, xq: np.ndarray, f: dict):
    """(value, source) of one side's own V at a mismatch, or (None, why not)."""
    if not spec.reports_potentials:
        return None, f"{spec.name} cannot report its potential"
    s, li, t, k = f["sample"], f["layer_index"], f["t"] - 1, f["neuron"]
    pots = r.potentials if r.potentials is not None and s < len(r.potentials[0]) else \
        run_spec(spec, bundle, xq[s:s + 1], record_spikes=False, record_potentials=True).potentials
    row = 0 if pots is not r.potentials else s
    return int(pots[li][row, t, k]), f"{spec.name}'s own V"


def compare_all(bundle: Bundle, xq: np.ndarray, results: dict, specs: list, exact: bool,
                mismatch_bound: float) -> tuple:
    """(pairs, failures) over every pair of integer backends."""
    g = bundle.graph
    names = [l.name for l in g.spiking_layers]
    pairs, failures = [], []
    ints = [s for s in specs if s.integer]
    for sa, sb in itertools.combinations(ints, 2):
        ra, rb = results[sa.name], results[sb.name]
        p = compare_pair(ra, rb, names)
        if p["samples"] < 1:
            raise BackendError(f"{sa.name} vs {sb.name}: compared no samples")
        p["expected_exact"] = expected_exact(sa, sb, exact)
        p["covered"] = sa.covered and sb.covered
        p["bound"] = 0.0 if p["expected_exact"] else mismatch_bound
        pm = None
        if ra.potentials is not None and rb.potentials is not None:
            pm = p["potentials"] = compare_potentials(ra.potentials, rb.potentials, names)
        same = p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 and (pm is None or pm["mismatches"] == 0)
        p["ok"] = same if p["expected_exact"] else p["mismatch_rate"] <= mismatch_bound
        f = p["first"]
        if f is not None and f["t"] is not None:
            for side, spec, r in (("a", sa, ra), ("b", sb, rb)):
                f[f"potential_{side}"], f[f"potential_{side}_source"] = _own_potential(spec, r, bundle, xq, f)
            layer = g.layers[f["layer_index"]]
            f["threshold_state"] = int(layer.threshold) << int(layer.frac_bits)
        pairs.append(p)
        if not p["ok"]:
            failures.append(pair_failure(p))
    return pairs, failures


def verify(bundle: Bundle, xq: np.ndarray, labels: Optional[np.ndarray], backends: list,
           lava_limit: int = 50, fault: Optional[str] = None, golden_dir=None, update_golden: bool = False,
           mismatch_bound: float = 0.01, progress: bool = False, dataset: str = "", fuzz: int = 0,
           seed: int = 0, fp_times: Optional[np.ndarray] = None, fp_ks: tuple = ()) -> VerifyReport:
    """backends: names (checked: >= 2 distinct integer backends) or BackendSpec records.
    fp_times (FP bundles): the samples' input spike times, for the dt table over fp_ks."""
    if int(lava_limit) < 1:
        raise BackendError(f"--lava-limit must be >= 1, got {lava_limit}")
    specs = backend_specs(backends, fault)
    g = bundle.graph
    cert = certify(g, conventions={s.name: s.convention for s in specs if s.integer})
    stored = bundle.manifest.get("certificate", {}).get("exact")
    exported = certify(g).exact if cert.exact != stored else cert.exact   # export's own conventions
    names = [l.name for l in g.spiking_layers]
    results, seconds = run_all(bundle, xq, specs, lava_limit, progress)
    rep = VerifyReport(bundle=str(bundle.path), certificate=cert.to_dict(),
                       certificate_matches_manifest=(stored is None or stored == exported),
                       samples={k: int(len(r.readout)) for k, r in results.items()},
                       accuracy={k: accuracy(r, labels) for k, r in results.items()} if labels is not None else {},
                       firing_rates={k: firing_rates(r) for k, r in results.items()}, seconds=seconds,
                       backends={s.name: describe(s) for s in specs},
                       mismatch_bound=mismatch_bound, layer_names=names, fault=fault,
                       models={k: r.info["models"] for k, r in results.items() if "models" in r.info})
    if not rep.certificate_matches_manifest:
        rep.failures.append(f"the manifest's certificate says exact={stored}, re-derived exact={exported}")
    rep.pairs, fails = compare_all(bundle, xq, results, specs, cert.exact, mismatch_bound)
    rep.failures += fails
    if "saf-float" in results and "saf-int" in results and labels is not None:
        n = min(len(results["saf-float"].readout), len(results["saf-int"].readout))
        fa, qa = accuracy(results["saf-float"], labels[:n]), accuracy(results["saf-int"], labels[:n])
        rep.float_to_quantized = {"float_accuracy": fa, "quantized_accuracy": qa, "change": qa - fa, "samples": n,
                                  "prediction_agreement": float((results["saf-float"].predictions[:n]
                                                                 == results["saf-int"].predictions[:n]).mean())}
    ints = [s.name for s in specs if s.integer]
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
    if fuzz:
        from saf.deploy.verify.fuzz import fuzz_verify
        rep.fuzz = fuzz_verify(bundle, specs, int(fuzz), int(seed), lava_limit, cert.exact, mismatch_bound, xq)
        rep.failures += [f"fuzz: {f}" for f in rep.fuzz["failures"]]
    if fp_times is not None and fp_ks:
        from saf.deploy.verify.fp_dt import fp_section
        rep.fp = fp_section(bundle, fp_times, labels, fp_ks)
        if rep.fp["source_mismatch"]:
            rep.failures.append(f"FP source: {rep.fp['source_mismatch']}")
    rep.ok = not rep.failures
    return rep


def _side(p: dict, f: dict, side: str) -> str:
    v = f.get(f"potential_{side}")
    src = f.get(f"potential_{side}_source", "")
    return f"{p[side]} spike={int(f[f'spike_{side}'])} " + (f"V={v}" if v is not None else f"V unknown ({src})")


def pair_failure(p: dict) -> str:
    f = p["first"]
    where = ""
    if f is not None and f["t"] is not None:
        where = (f"; first at sample {f['sample']}, layer {f['layer']}, t={f['t']}, neuron {f['neuron']} "
                 f"({_side(p, f, 'a')}, {_side(p, f, 'b')}, TH<<F={f.get('threshold_state')})")
    elif f is not None:
        where = f"; first at sample {f['sample']}, readout class {f['neuron']}"
    pm = p.get("potentials")
    if pm and pm["first"] is not None:
        q = pm["first"]
        where += (f"; {pm['mismatches']} potentials differ, first at sample {q['sample']}, layer {q['layer']}, "
                  f"t={q['t']}, neuron {q['neuron']} ({p['a']} V={q['potential_a']}, {p['b']} V={q['potential_b']})")
    kind = "must be identical" if p["expected_exact"] else \
        f"mismatch rate {p['mismatch_rate']:.2e} > bound {p['bound']:.2e}"
    return (f"{p['a']} vs {p['b']} ({kind}): {p['spike_mismatches']}/{p['spikes_total']} spikes and "
            f"{p['readout_mismatches']}/{p['readout_total']} readouts differ{where}")


def format_pairs(pairs: list, mismatch_bound: float) -> list:
    lines = []
    for p in pairs:
        per = ", ".join(f"{l['layer']} {l['mismatches']}/{l['total']}" for l in p["layers"])
        tag = "exact required" if p["expected_exact"] else f"bound {mismatch_bound:.0e}"
        if not p.get("covered", True):
            tag += "; not covered by the certificate"
        pm = p.get("potentials")
        pot = f", potentials {pm['mismatches']}/{sum(l['total'] for l in pm['layers'])} differ" if pm else ""
        lines.append(f"  {'OK  ' if p['ok'] else 'FAIL'} {p['a']} vs {p['b']} on {p['samples']}: "
                     f"{p['spike_mismatches']} mismatching spikes [{per}], readout {p['readout_mismatches']} "
                     f"differ{pot} ({tag})")
    return lines


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
        note = "" if rep.backends.get(k, {}).get("covered", True) else "  (not covered by the certificate)"
        lines.append(f"  {k:<18} {n:>5} samples  accuracy {acc:.4f}  firing rates [{rates}]{note}"
                     if acc is not None else f"  {k:<18} {n:>5} samples{note}")
    if rep.float_to_quantized:
        f = rep.float_to_quantized
        lines.append(f"float -> quantized accuracy: {f['float_accuracy']:.4f} -> {f['quantized_accuracy']:.4f} "
                     f"({f['change']:+.4f}), same prediction {f['prediction_agreement']:.2%}")
    for k, m in rep.models.items():
        lines += [f"{k}: Lava Processes / ProcessModels that ran, per layer"] + format_models(m, "    ")
    lines.append("spike trains, every layer and time step:")
    lines += format_pairs(rep.pairs, rep.mismatch_bound)
    for d in rep.golden:
        lines.append(f"  golden {d['backend']}: " + ("no drift" if d["ok"] else d["reason"]))
    if rep.fuzz:
        from saf.deploy.verify.fuzz import format_fuzz
        lines += format_fuzz(rep.fuzz, rep.mismatch_bound)
    if rep.fp:
        from saf.deploy.verify.fp_dt import format_fp
        lines += format_fp(rep.fp)
    lines += [f"FAIL: {f}" for f in rep.failures]
    lines.append("verify: PASS" if rep.ok else "verify: FAIL")
    return "\n".join(lines)
