"""Write a VerifyReport: verify.json + summary.txt in a directory built beside the old one and swapped
in when complete (core/outdir.py), optional Markdown report with PNGs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from saf.core.outdir import OutputKind, Staged, check_file_target, check_target

VERIFY_JSON = "verify.json"
SUMMARY = "summary.txt"
REPORT_MD = "report.md"
FUZZ_FAILURE = "fuzz-failure.npy"    # verify --fuzz: the first failing input
FP_TABLE_PNG = "fp-dt-table.png"     # FP bundles: the dt table's plot (deploy/verify/fp_dt.py)


def _is_verify_json(path: Path) -> bool:
    try:
        r = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(r, dict) and "certificate" in r and "pairs" in r


# A verify output directory: a later `saf verify --out` replaces it (and nothing else) as a whole.
VERIFY_DIR = OutputKind("saf verify report", VERIFY_JSON, _is_verify_json,
                        (VERIFY_JSON, SUMMARY, REPORT_MD, Path(REPORT_MD).with_suffix(".rates.png").name,
                         FUZZ_FAILURE, FP_TABLE_PNG))


def check_outputs(out: Path, report_md: Optional[str]) -> None:
    """Before verify runs anything: --out is absent, empty or an earlier verify report; --report is a
    file saf can write."""
    check_target(out, (VERIFY_DIR,), force=True)
    if report_md:
        check_file_target(report_md, "--report")


def _default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def write_outputs(rep, text: str, out: Path, report_md=None, extra: Optional[dict] = None) -> None:
    """verify.json, summary.txt (and the report, when it lives in `out`) plus `extra` files
    (name -> writer(path)), all swapped in together."""
    out = Path(out)
    data = json.dumps(rep.to_dict(), indent=2, default=_default)
    report = Path(report_md) if report_md else None
    inside = report is not None and report.resolve().parent == out.resolve()
    with Staged(out, (VERIFY_DIR,), force=True) as tmp:
        (tmp / VERIFY_JSON).write_text(data)
        (tmp / SUMMARY).write_text(text + "\n")
        for name, writer in (extra or {}).items():
            writer(tmp / name)
        if inside:                                  # the report travels with the directory
            write_markdown(rep, tmp / report.name)
    if report is not None and not inside:
        write_markdown(rep, report)


def write_markdown(rep, path: Path) -> None:
    from saf.core.files import atomic_write

    from saf.deploy.plots import plot_rates
    from saf.deploy.verify.fuzz import verdict

    png = path.with_suffix(".rates.png")
    plot_rates(rep.firing_rates, rep.layer_names, png)
    c = rep.certificate
    md = [f"# saf verify: {verdict(rep)}", "", f"Bundle: `{rep.bundle}`", "",
          "## Certificate (re-derived from the bundle)", "", f"**{'EXACT' if c['exact'] else 'NOT EXACT'}**", "",
          "| check | layer | ok | detail |", "|---|---|---|---|"]
    md += [f"| {ch['check']} | {ch['layer']} | {'yes' if ch['ok'] else 'NO'} | {ch['detail']} |" for ch in c["checks"]]
    md += ["", "## Backends", ""] + [f"Note: {n}" for n in rep.notes] + ([""] if rep.notes else [])
    md += ["| backend | what it is | samples | accuracy | seconds |", "|---|---|---|---|---|"]
    for k, n in rep.samples.items():
        acc = rep.accuracy.get(k, float("nan"))
        what = rep.backends.get(k, {}).get("description", "")
        md.append(f"| {k} | {what} | {n} | {acc:.4f} | {rep.seconds.get(k, float('nan')):.2f} |")
    md += ["", f"Inputs run and compared {rep.chunk} at a time; the process's peak resident memory "
               f"(ru_maxrss) {rep.peak_rss_mib:.0f} MiB."]
    if rep.float_to_quantized:
        f = rep.float_to_quantized
        md += ["", f"Float -> quantized accuracy: {f['float_accuracy']:.4f} -> {f['quantized_accuracy']:.4f} "
                   f"({f['change']:+.4f})."]
    md += ["", "## Spike trains (every layer, every time step)", "",
           "| pair | samples | " + " | ".join(rep.layer_names) + " | readout | status |",
           "|---" * (len(rep.layer_names) + 4) + "|"]
    for p in rep.pairs:
        cells = " | ".join(["not comparable"] * len(rep.layer_names) if p.get("shape_error") else
                           [f"{l['mismatches']}/{l['total']}" for l in p["layers"]])
        md.append(f"| {p['a']} vs {p['b']} | {p['samples']} | {cells} | {p['readout_mismatches']}/"
                  f"{p['readout_total']} | {'ok' if p['ok'] else 'FAIL'} |")
    if rep.fuzz:
        fz = rep.fuzz
        md += ["", f"## Fuzz: {fz['n']} inputs beyond the dataset (seed {fz['seed']})", "",
               "| layer | ties (fuzz) | ties (constructed) | ties (dataset) | max abs V fuzz | max abs V dataset | "
               "abs V >= 2^22 (fuzz) |", "|---|---|---|---|---|---|---|"]
        md += [f"| {f['layer']} | {f['ties']} | {f['ties_by_class'].get('tie', 0)} | {d['ties']} | "
               f"{f['max_abs_v']:,} | {d['max_abs_v']:,} | {f['near_bound']} |"
               for f, d in zip(fz["layers"], fz["dataset_layers"])]
        md += [f"| tie V == TH<<F reached | " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in
                                                        fz.get("ties_reached", {}).items()) + " | | | | | |"]
        md += [f"| {p['a']} vs {p['b']} | {p['samples']} samples | {p['spike_mismatches']} spikes differ | "
               f"{'ok' if p['ok'] else 'FAIL'} | | | |" for p in fz["pairs"]]
    if rep.approximate:
        from saf.deploy.verify.approx import format_approx
        md += ["", "## Approximate bundle: agreement with the float model (measured)", "", "```"]
        md += format_approx(rep.approximate) + ["```"]
    md += ["", "## Firing rates", "", f"![per-layer firing rates]({png.name})", ""]
    if rep.failures:
        md += ["## Failures", ""] + [f"- {f}" for f in rep.failures]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(md) + "\n"))
