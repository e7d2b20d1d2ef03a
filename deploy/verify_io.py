"""Write a VerifyReport: verify.json + summary.txt (atomic), optional Markdown report with PNGs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def write_outputs(rep, text: str, out: Path, report_md=None) -> None:
    from saf.train.checkpoint import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = json.dumps(rep.to_dict(), indent=2, default=_default)
    atomic_write(out / "verify.json", lambda tmp: Path(tmp).write_text(data))
    atomic_write(out / "summary.txt", lambda tmp: Path(tmp).write_text(text + "\n"))
    if report_md:
        write_markdown(rep, Path(report_md))


def write_markdown(rep, path: Path) -> None:
    from saf.train.checkpoint import atomic_write

    from .plots import plot_rates

    png = path.with_suffix(".rates.png")
    plot_rates(rep.firing_rates, rep.layer_names, png)
    c = rep.certificate
    md = [f"# saf verify: {'PASS' if rep.ok else 'FAIL'}", "", f"Bundle: `{rep.bundle}`", "",
          "## Certificate (re-derived from the bundle)", "", f"**{'EXACT' if c['exact'] else 'NOT EXACT'}**", "",
          "| check | layer | ok | detail |", "|---|---|---|---|"]
    md += [f"| {ch['check']} | {ch['layer']} | {'yes' if ch['ok'] else 'NO'} | {ch['detail']} |" for ch in c["checks"]]
    md += ["", "## Backends", "", "| backend | samples | accuracy | seconds |", "|---|---|---|---|"]
    for k, n in rep.samples.items():
        acc = rep.accuracy.get(k, float("nan"))
        md.append(f"| {k} | {n} | {acc:.4f} | {rep.seconds.get(k, float('nan')):.2f} |")
    if rep.float_to_quantized:
        f = rep.float_to_quantized
        md += ["", f"Float -> quantized accuracy: {f['float_accuracy']:.4f} -> {f['quantized_accuracy']:.4f} "
                   f"({f['change']:+.4f})."]
    md += ["", "## Spike trains (every layer, every time step)", "",
           "| pair | samples | " + " | ".join(rep.layer_names) + " | readout | status |",
           "|---" * (len(rep.layer_names) + 4) + "|"]
    for p in rep.pairs:
        cells = " | ".join(f"{l['mismatches']}/{l['total']}" for l in p["layers"])
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
        md += [f"| {p['a']} vs {p['b']} | {p['samples']} samples | {p['spike_mismatches']} spikes differ | "
               f"{'ok' if p['ok'] else 'FAIL'} | | | |" for p in fz["pairs"]]
    md += ["", "## Firing rates", "", f"![per-layer firing rates]({png.name})", ""]
    if rep.failures:
        md += ["## Failures", ""] + [f"- {f}" for f in rep.failures]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(md) + "\n"))
