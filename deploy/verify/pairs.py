"""Every integer backend run on the same inputs and compared pairwise: which pairs must agree exactly
(the certificate and the backends' records decide), spikes and readouts of every layer at every step,
and each side's own potential at the first mismatch. Used by verify (core.py) and by fuzzing (fuzz.py)."""
from __future__ import annotations

import itertools
import time

import numpy as np

from saf.deploy.backends.registry import Bundle, run_spec
from saf.deploy.backends.spec import BACKENDS, BackendError, BackendSpec, Form, runs_modes
from saf.deploy.verify.compare import compare_pair, compare_potentials


POTENTIAL_BUDGET = 1 << 25          # int64 potentials recorded per backend and input set (256 MiB)


def expected_exact(a: BackendSpec, b: BackendSpec, exact: bool, graph=None) -> bool:
    """Whether a pair must agree bit for bit: both covered, both running the same (compare, reset) on every
    layer of `graph` (their declarations, without a graph), and both LIF forms or the certificate exact."""
    if not (a.covered and b.covered):
        return False
    same = a.convention == b.convention if graph is None else \
        runs_modes(a, graph) == runs_modes(b, graph) and None not in runs_modes(a, graph)
    if not same:
        return False
    if a.form is Form.LIF and b.form is Form.LIF:
        return True
    return exact


def exact_pair_failure(pairs: list, specs: list, exact: bool, graph) -> str:
    """"" when at least one compared pair of distinct backends is covered by the certificate and expected
    exact; else why not, naming the backends to add. Without such a pair a PASS would prove nothing."""
    if any(p["expected_exact"] for p in pairs):
        return ""
    given = {s.name for s in specs}
    add = [n for n, s in BACKENDS.items() if s.integer and s.covered and n not in given and not s.unavailable()
           and not s.refuses(graph) and (s.form is Form.LIF or exact)]
    why = "the certificate is NOT EXACT, so only two integer LIF implementations must agree" if not exact else \
        "no two of them are covered by the certificate with one convention"
    return (f"no pair of backends is expected to agree exactly ({why}): {', '.join(sorted(given))} proves nothing "
            f"spike for spike; add {' or '.join(add) if add else 'a covered integer LIF backend'}")


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
    """(pairs, failures) over every pair of integer backends, on whole runs (verify streams: stream.py)."""
    pairs, failures = [], []
    for sa, sb in itertools.combinations([s for s in specs if s.integer], 2):
        p = compare_chunk(bundle, xq, results[sa.name], results[sb.name], sa, sb, 0, need_first=True)
        p, why = finish_pair(p, sa, sb, exact, mismatch_bound, bundle.graph)
        pairs.append(p)
        failures += [why] if why else []
    return pairs, failures


def compare_chunk(bundle: Bundle, xq: np.ndarray, ra, rb, sa: BackendSpec, sb: BackendSpec, offset: int,
                  need_first: bool) -> dict:
    """One pair on one chunk xq (ra, rb: the two runs on it), every spiking layer of the bundle's graph;
    sample indices in the result are global (chunk-local + offset). need_first: look up each side's own
    potential at the first spike mismatch."""
    names = [l.name for l in bundle.graph.spiking_layers]
    p = compare_pair(ra, rb, names)
    if p.get("shape_error"):
        return p
    pm = None
    if ra.potentials is not None and rb.potentials is not None:
        pm = p["potentials"] = compare_potentials(ra.potentials, rb.potentials, names)
        if pm.get("shape_error"):
            p.setdefault("shape_error", pm["shape_error"])
            return p
    f = p["first"]
    if f is not None and f["t"] is not None and need_first:
        for side, spec, r in (("a", sa, ra), ("b", sb, rb)):
            f[f"potential_{side}"], f[f"potential_{side}_source"] = _own_potential(spec, r, bundle, xq, f)
        layer = bundle.graph.layers[f["layer_index"]]
        f["threshold_state"] = int(layer.threshold) << int(layer.frac_bits)
    for q in (f, pm["first"] if pm else None):
        if q is not None:
            q["sample"] += offset
    return p


_SUMS = ("samples", "spike_mismatches", "spikes_total", "readout_mismatches", "readout_total", "prediction_mismatches")


def merge_pair(acc, p: dict) -> dict:
    """acc (a pair's counts over the chunks before) and p (the next chunk's) as one: counts add up, the
    first mismatch is the earliest (a spike mismatch before any readout-only one, as compare_pair orders)."""
    if acc is None:
        return p
    if acc.get("shape_error") or p.get("shape_error"):
        keep = acc if acc.get("shape_error") else p
        keep["samples"] = acc["samples"] + p["samples"]
        return keep
    for k in _SUMS:
        acc[k] += p[k]
    for la, lb in zip(acc["layers"], p["layers"]):
        la["mismatches"] += lb["mismatches"]
        la["total"] += lb["total"]
    fa, fb = acc["first"], p["first"]
    if fa is None or (fa["t"] is None and fb is not None and fb["t"] is not None):
        acc["first"] = fb
    pa, pb = acc.get("potentials"), p.get("potentials")
    if pb is not None:
        if pa is None:
            acc["potentials"] = pb
        else:
            pa["samples"] += pb["samples"]
            pa["mismatches"] += pb["mismatches"]
            for la, lb in zip(pa["layers"], pb["layers"]):
                la["mismatches"] += lb["mismatches"]
                la["total"] += lb["total"]
            pa["first"] = pa["first"] if pa["first"] is not None else pb["first"]
    return acc


def finish_pair(p: dict, sa: BackendSpec, sb: BackendSpec, exact: bool, mismatch_bound: float, graph) -> tuple:
    """(pair report, failure line or "") from a pair's counts over every sample both ran."""
    if p["samples"] < 1:
        raise BackendError(f"{sa.name} vs {sb.name}: compared no samples")
    p["mismatch_rate"] = p["spike_mismatches"] / max(1, p["spikes_total"])
    p["readout_mismatch_rate"] = p["readout_mismatches"] / max(1, p["readout_total"])
    pm = p.pop("potentials", None)
    p["expected_exact"] = expected_exact(sa, sb, exact, graph)
    p["covered"] = sa.covered and sb.covered
    p["bound"] = 0.0 if p["expected_exact"] else mismatch_bound
    if pm is not None:
        p["potentials"] = pm
    same = p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0 and (pm is None or pm["mismatches"] == 0)
    within = p["mismatch_rate"] <= mismatch_bound and p["readout_mismatch_rate"] <= mismatch_bound
    p["ok"] = not p.get("shape_error") and (same if p["expected_exact"] else within)
    if p.get("shape_error"):
        return p, f"{sa.name} vs {sb.name}: not comparable on every layer: {p['shape_error']}"
    return p, ("" if p["ok"] else pair_failure(p))


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
        (f"mismatch rates {p['mismatch_rate']:.2e} (spikes), {p['readout_mismatch_rate']:.2e} (readouts) "
         f"vs bound {p['bound']:.2e}")
    return (f"{p['a']} vs {p['b']} ({kind}): {p['spike_mismatches']}/{p['spikes_total']} spikes and "
            f"{p['readout_mismatches']}/{p['readout_total']} readouts differ{where}")


def format_pairs(pairs: list, mismatch_bound: float) -> list:
    lines = []
    for p in pairs:
        if p.get("shape_error"):
            lines.append(f"  FAIL {p['a']} vs {p['b']}: not comparable on every layer: {p['shape_error']}")
            continue
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
