"""`saf verify --fuzz N --seed S`: every integer backend compared on N inputs beyond the dataset
(deploy/verify/fuzz_inputs.py; subset backends such as Lava on the first --lava-limit of them, which include every
constructed input first), with ties and near-bound states counted per layer for the fuzz inputs and
for the dataset inputs side by side."""
from __future__ import annotations

import numpy as np

from saf.deploy.backends.spec import BackendError, as_specs
from saf.deploy.verify.fuzz_inputs import NEAR_BOUND, layer_stats, make_fuzz_inputs, min_fuzz


def _failing_sample(pairs: list):
    """(pair, sample index) of the first failing pair's first difference, or None."""
    for p in pairs:
        if p["ok"]:
            continue
        cands = [p["first"]["sample"]] if p["first"] is not None else []
        if p.get("potentials") and p["potentials"]["first"] is not None:
            cands.append(p["potentials"]["first"]["sample"])
        if cands:
            return p, min(cands)
    return None


def check_fuzz(g, n: int) -> None:
    """Refuse a fuzz count below what this network's constructed inputs need (fuzz_inputs.min_fuzz)."""
    if n < min_fuzz(g):
        raise BackendError(f"--fuzz must be >= {min_fuzz(g)} on this bundle (two constructed tie and two "
                           f"near-bound inputs per spiking layer, plus one of each random class), got {n}")


def fuzz_verify(bundle, specs: list, n: int, seed: int, lava_limit: int, exact: bool, mismatch_bound: float,
                dataset_xq: np.ndarray) -> dict:
    from saf.deploy.verify.pairs import compare_all, run_all

    g = bundle.graph
    specs = as_specs(specs, "fuzz backends")      # the rules verify applies (spec.check_specs)
    check_fuzz(g, n)
    fz = make_fuzz_inputs(g, n, seed)
    results, seconds = run_all(bundle, fz.xq, specs, lava_limit, progress=False)
    pairs, failures = compare_all(bundle, fz.xq, results, specs, exact, mismatch_bound)
    classes = {c: fz.classes.count(c) for c in dict.fromkeys(fz.classes)}
    rep = {"n": n, "seed": seed, "classes": classes, "samples": {k: int(len(r.readout)) for k, r in results.items()},
           "seconds": seconds, "search": fz.search, "layers": layer_stats(g, fz.xq, fz.classes),
           "dataset_layers": layer_stats(g, dataset_xq), "near_bound_threshold": NEAR_BOUND,
           "pairs": pairs, "failures": failures, "failing": None}
    rep["ties_reached"] = ties_reached(rep)
    hit = _failing_sample(pairs)
    if hit is not None:
        p, s = hit
        rep["failing"] = {"a": p["a"], "b": p["b"], "sample": s, "class": fz.classes[s]}
        rep["failing_input"] = fz.xq[s:s + 1]          # the CLI saves it as .npy (not in verify.json)
    return rep


def ties_reached(fz: dict) -> dict:
    """Per spiking layer: did some compared input (fuzz or dataset) put a neuron exactly on its threshold,
    V == TH<<F, where `>=` and `>` disagree? Counted on the emulator's potentials (fuzz_inputs.layer_stats)."""
    return {f["layer"]: f["ties"] + d["ties"] > 0 for f, d in zip(fz["layers"], fz["dataset_layers"])}


def untied_layers(fz: dict) -> list:
    """The layers where no tie was reached: a PASS says nothing about `>=` vs `>` there."""
    return [k for k, v in ties_reached(fz).items() if not v]


def verdict(rep) -> str:
    """verify's summary word: FAIL, PASS, or PASS (ties not reached in: ...) when fuzzing reached no
    threshold tie in some layer (exit 1 then, unless --allow-untested-ties)."""
    if rep.failures:
        return "FAIL"
    if rep.untied:
        return f"PASS (ties not reached in: {', '.join(rep.untied)})"
    return "PASS"


def format_fuzz(fz: dict, mismatch_bound: float) -> list:
    from saf.deploy.verify.pairs import format_pairs

    cls = ", ".join(f"{k} {v}" for k, v in fz["classes"].items())
    lines = [f"fuzz: {fz['n']} inputs beyond the dataset (seed {fz['seed']}: {cls}); samples per backend "
             + ", ".join(f"{k} {v}" for k, v in fz["samples"].items())]
    lines.append(f"  {'layer':<10} {'ties fuzz':>10} {'(constructed)':>13} {'ties data':>10} "
                 f"{'max|V| fuzz':>12} {'max|V| data':>12} {'of 2^23-1':>10} {'|V|>=2^22':>10}")
    for f, d in zip(fz["layers"], fz["dataset_layers"]):
        lines.append(f"  {f['layer']:<10} {f['ties']:>10} {f['ties_by_class'].get('tie', 0):>13} {d['ties']:>10} "
                     f"{f['max_abs_v']:>12,} {d['max_abs_v']:>12,} {f['fraction_of_bound']:>9.1%} "
                     f"{f['near_bound']:>10}")
    for s in fz["search"]:
        if not s["tie_found"]:
            lines.append(f"  note: the search found no input putting a neuron of {s['layer']} exactly on its threshold "
                         f"(closest: |V - TH<<F| = {s['closest_tie_gap']}); ties there are only those counted above")
    reached = ties_reached(fz)
    lines.append("  tie V == TH<<F reached (fuzz or dataset): " +
                 ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in reached.items()))
    lines += format_pairs(fz["pairs"], mismatch_bound)
    if fz.get("failing_file"):
        lines.append(f"  failing input saved to {fz['failing_file']}; reproduce with: {fz['reproduce']}")
    return lines
