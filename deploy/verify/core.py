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

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from saf.export.proof.certificate import certify, target_registers
from saf.export.ir import modes_text

from saf.deploy.backends.spec import BackendError, BackendSpec, as_specs
from saf.deploy.backends.registry import Bundle, fault_backend
from saf.deploy.verify.compare import accuracy
from saf.deploy.verify.pairs import exact_pair_failure, format_pairs
from saf.deploy.verify.stream import run_compare
from saf.deploy.verify.fuzz import check_fuzz, verdict
from saf.deploy.verify.options import VerifyOptions
from saf.deploy.verify.golden import compare_golden, golden_record, read_golden, write_golden
from saf.deploy.lava.model_listing import format_models

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
    notes: list = field(default_factory=list)      # e.g. a default backend replaced (lava -> lava-own), and why
    untied: list = field(default_factory=list)     # fuzz: layers where no threshold tie was reached
    allow_untested_ties: bool = False
    approximate: Optional[dict] = None  # --approximate bundles: agreement with the float model (approx.py)
    export_drift: Optional[dict] = None  # NOT EXACT bundles: export's drift table and exact advice (manifest)
    chunk: int = 0                      # samples per chunk (stream.py)
    peak_rss_mib: float = 0.0           # the whole process's peak resident memory so far (ru_maxrss)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def describe(spec: BackendSpec) -> dict:
    return {"form": spec.form.value, "reports_potentials": spec.reports_potentials,
            "convention": modes_text(spec.convention) if spec.convention else None, "covered": spec.covered,
            "subset": spec.subset, "description": spec.description,
            "current_register": list(spec.current_register) if spec.current_register else None}


def backend_specs(backends, fault: Optional[str] = None) -> list:
    """Records for a backend list of names or records, checked by the same rules either way (no duplicates,
    >= 2 distinct integer backends, available: spec.check_specs), plus the faulty emulator when `fault` is given."""
    return as_specs(backends) + ([fault_backend(fault)] if fault else [])


def grid_rows_of(bundle: Bundle) -> tuple:
    """A grid-trained bundle's certificate rows (export/proof/grid_rows.py), re-derived from its source
    checkpoint; () for any other bundle."""
    if not bundle.graph.meta.get("trained_on_grid"):
        return ()
    from saf.export.bundle.store import SOURCE_FILE
    from saf.export.pipeline.grid import source_grid_rows
    from saf.export.proof.certificate import Check

    try:
        data = bundle.file_bytes(SOURCE_FILE, BackendError)
    except BackendError as e:
        return (Check("on_grid", "all", False, f"the trained checkpoint is not readable: {e}"),)
    return tuple(source_grid_rows(data, f"{bundle.path}/{SOURCE_FILE}", bundle.graph))


def verify(bundle: Bundle, xq: np.ndarray, labels: Optional[np.ndarray], backends: list,
           options: Optional[VerifyOptions] = None, fp_times: Optional[np.ndarray] = None,
           **kw) -> VerifyReport:
    """backends: names (checked: >= 2 distinct integer backends) or BackendSpec records.
    options: a VerifyOptions record, or its fields as keywords (lava_limit=, fault=, golden_dir=, ...); either
    way it checks itself once, here or where the CLI made it.
    fp_times (FP bundles): the samples' input spike times, for the dt table over options.fp_ks.
    With fuzz, a layer where no input reached a threshold tie leaves the report not ok (the summary reads
    "PASS (ties not reached in: ...)") unless allow_untested_ties.
    chunk: samples run and compared at a time; the report does not depend on it."""
    o = replace(options, **kw) if options is not None else VerifyOptions(**kw)
    specs = backend_specs(backends, o.fault)
    if o.fuzz:
        check_fuzz(bundle.graph, int(o.fuzz))          # before anything runs
    g = bundle.graph
    extra = grid_rows_of(bundle)
    cert = certify(g, conventions={s.name: s.convention for s in specs if s.integer},
                   registers={**target_registers(g), **{s.name: s.current_register for s in specs
                                                        if s.current_register is not None}}, extra=extra)
    stored = bundle.manifest.get("certificate", {}).get("exact")
    exported = certify(g, extra=extra).exact if cert.exact != stored else cert.exact   # export's own conventions
    saf_exact = cert.saf_form            # the pairs' "exact": the SAF form (saf-int) equals the LIF forms
    results, pairs, fails = run_compare(bundle, xq, specs, o, saf_exact, hashes=o.golden_dir is not None)
    rep = VerifyReport(bundle=str(bundle.path), certificate=cert.to_dict(),
                       certificate_matches_manifest=(stored is None or stored == exported),
                       samples={k: int(len(r.readout)) for k, r in results.items()},
                       accuracy={k: accuracy(r, labels) for k, r in results.items()} if labels is not None else {},
                       firing_rates={k: r.rates() for k, r in results.items()},
                       seconds={k: r.seconds for k, r in results.items()}, chunk=o.chunk,
                       backends={s.name: describe(s) for s in specs},
                       mismatch_bound=o.mismatch_bound, layer_names=[l.name for l in g.spiking_layers],
                       fault=o.fault, models={k: r.info["models"] for k, r in results.items() if "models" in r.info})
    if not rep.certificate_matches_manifest:
        rep.failures.append(f"the manifest's certificate says exact={stored}, re-derived exact={exported}")
    rep.pairs = pairs
    rep.failures += fails
    given = specs[:-1] if o.fault else specs           # an injected fault's backend proves nothing
    names_given = {s.name for s in given}
    why = exact_pair_failure([p for p in rep.pairs if {p["a"], p["b"]} <= names_given], given, saf_exact, g)
    if why:
        rep.failures.append(why)
    _float_to_quantized(rep, bundle, results, labels)
    _golden(rep, o, results, specs, xq)
    _fuzz(rep, o, bundle, specs, saf_exact, xq)
    if fp_times is not None and o.fp_ks:
        from saf.deploy.verify.fp_dt import fp_section
        rep.fp = fp_section(bundle, fp_times, labels, o.fp_ks)
        if rep.fp["source_mismatch"]:
            rep.failures.append(f"FP source: {rep.fp['source_mismatch']}")
    _approximate(rep, bundle, cert, results, specs, xq, labels, o.chunk)
    rep.ok = not rep.failures and (not rep.untied or rep.allow_untested_ties)
    rep.peak_rss_mib = peak_rss_mib()
    return rep


def _float_to_quantized(rep: VerifyReport, bundle: Bundle, results: dict, labels) -> None:
    """The float -> quantized accuracy change, where saf-float and saf-int both ran on labelled inputs."""
    from saf.deploy.verify.approx import is_approximate
    if "saf-float" in results and "saf-int" in results and labels is not None and not is_approximate(bundle):
        n = min(len(results["saf-float"].readout), len(results["saf-int"].readout))
        fa, qa = accuracy(results["saf-float"], labels[:n]), accuracy(results["saf-int"], labels[:n])
        rep.float_to_quantized = {"float_accuracy": fa, "quantized_accuracy": qa, "change": qa - fa, "samples": n,
                                  "prediction_agreement": float((results["saf-float"].predictions[:n]
                                                                 == results["saf-int"].predictions[:n]).mean())}


def _golden(rep: VerifyReport, o: VerifyOptions, results: dict, specs: list, xq: np.ndarray) -> None:
    """Every integer backend against the golden results (written first with update_golden)."""
    if o.golden_dir is None:
        return
    ints = [s.name for s in specs if s.integer]
    ref = results.get("saf-int") or results[ints[0]]
    if o.update_golden:
        write_golden(o.golden_dir, golden_record(ref, o.dataset, xq))
    gold = read_golden(o.golden_dir)
    for k in ints:
        d = compare_golden(gold, results[k], xq)  # each backend's inputs (a subset too) and every spike
        rep.golden.append(d)
        if not d["ok"]:
            rep.failures.append(f"golden drift ({k}): {d['reason']}")


def _fuzz(rep: VerifyReport, o: VerifyOptions, bundle: Bundle, specs: list, saf_exact: bool,
          xq: np.ndarray) -> None:
    if not o.fuzz:
        return
    from saf.deploy.verify.fuzz import fuzz_verify, untied_layers
    rep.fuzz = fuzz_verify(bundle, specs, int(o.fuzz), int(o.seed), o.lava_limit, saf_exact, o.mismatch_bound, xq)
    rep.failures += [f"fuzz: {f}" for f in rep.fuzz["failures"]]
    rep.untied, rep.allow_untested_ties = untied_layers(rep.fuzz), bool(o.allow_untested_ties)


def _approximate(rep: VerifyReport, bundle: Bundle, cert, results: dict, specs: list, xq: np.ndarray, labels,
                 chunk: int) -> None:
    """Export's drift table (NOT EXACT bundles) and an approximate bundle's agreement with the float model."""
    from saf.deploy.verify.approx import approx_section, is_approximate
    if "drift" in bundle.manifest or "exact_advice" in bundle.manifest:
        rep.export_drift = {k: bundle.manifest.get(k) for k in ("drift", "exact_advice")}
    if is_approximate(bundle):
        rep.approximate = approx_section(bundle, xq, labels, results, specs, chunk)
        if cert.exact:                 # an approximate bundle the certificate calls exact: never
            rep.failures.append("the bundle says it was exported --approximate, yet its certificate re-derives exact")


def peak_rss_mib() -> float:
    """The whole process's peak resident memory so far, MiB (getrusage ru_maxrss: KiB on Linux), not
    verify's alone: whatever ran before it in the process counts."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_report(rep: VerifyReport) -> str:
    c = rep.certificate
    lines = ["certificate (re-derived from the bundle's weights): " + ("EXACT" if c["exact"] else
                                                                      "NOT EXACT -- " + "; ".join(c["reasons"]))]
    for ch in c["checks"]:
        lines.append(f"  [{'ok' if ch['ok'] else 'NO'}] {ch['check']:<12} {ch['layer']:<10} {ch['detail']}")
    lines += [f"note: {n}" for n in rep.notes]
    lines.append("backends:")
    for k, n in rep.samples.items():
        acc = rep.accuracy.get(k)
        rates = " ".join(f"{r:.3f}" for r in rep.firing_rates[k])
        note = "" if rep.backends.get(k, {}).get("covered", True) else "  (not covered by the certificate)"
        note += f"  [{rep.backends[k]['description']}]" if k in rep.backends else ""
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
    if rep.export_drift:
        from saf.export.pipeline.drift import format_drift
        d, adv = rep.export_drift["drift"], rep.export_drift["exact_advice"]
        lines += (["measured by saf export (the bundle's manifest): " + format_drift(d, adv)[0]] + format_drift(d, adv)[1:]
                  if d else [f"NOT EXACT; what would make it exact: {adv}"])
    if rep.approximate:
        from saf.deploy.verify.approx import format_approx
        lines += format_approx(rep.approximate)
    lines += [f"FAIL: {f}" for f in rep.failures]
    if rep.untied and not rep.failures:
        lines.append("  accepted with --allow-untested-ties" if rep.allow_untested_ties else
                     "  exit status 1: `>=` vs `>` is untested there; pass --allow-untested-ties to accept")
    lines.append("seconds per backend (every chunk): " + ", ".join(f"{k} {v:.2f}" for k, v in rep.seconds.items()))
    lines.append(f"chunks of {rep.chunk} samples; process peak resident memory {rep.peak_rss_mib:.0f} MiB (ru_maxrss)")
    lines.append(f"verify: {verdict(rep)}")
    return "\n".join(lines)
