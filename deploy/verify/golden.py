"""Golden outputs: readout sums, a hash of every spike (which neuron, which step, every layer) and a
hash of every input, per sample, of a bundle on fixed inputs, so conversion fidelity is regression-tested
(`saf verify --golden DIR`, `--update-golden`). A backend that runs a subset (Lava: the first
--lava-limit samples) is checked on those samples, inputs included."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saf.deploy.verify.compare import sample_hashes, spike_hashes
from saf.export.result import BackendResult
from saf.core.errors import SafError

GOLDEN_FILE = "golden.json"
GOLDEN_VERSION = 2     # 1: per-step spike counts and one hash of all inputs (neuron swaps and subsets unchecked)


class GoldenError(SafError, ValueError):
    """Golden outputs missing or unreadable (one line)."""


def golden_record(r: BackendResult, dataset: str, xq: np.ndarray) -> dict:
    n = int(len(r.readout))
    return {"version": GOLDEN_VERSION, "backend": r.backend, "dataset": dataset, "n": n,
            "input_hashes": sample_hashes(xq[:n]), "readout": r.readout.astype(np.int64).tolist(),
            "spike_hashes": _hashes(r)}


def _hashes(r) -> list:
    """Per-sample spike hashes: a whole run's (BackendResult), or those verify kept chunk by chunk (stream.py)."""
    return r.hashes if getattr(r, "spikes", None) is None and getattr(r, "hashes", None) is not None \
        else spike_hashes(r)


def write_golden(directory, record: dict) -> Path:
    from saf.core.files import atomic_write

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    p = d / GOLDEN_FILE
    atomic_write(p, lambda tmp: Path(tmp).write_text(json.dumps(record)))
    return p


def read_golden(directory) -> dict:
    p = Path(directory) / GOLDEN_FILE
    if not p.is_file():
        raise GoldenError(f"{p}: no golden outputs (create them with --update-golden)")
    try:
        g = json.loads(p.read_text())
        if not isinstance(g, dict):
            raise GoldenError(f"{p}: unreadable golden file (not a JSON object)")
        if g.get("version") == 1:
            raise GoldenError(f"{p}: golden version 1 pins spike counts only (not which neuron fired); "
                              f"regenerate it with --update-golden")
        if g.get("version") != GOLDEN_VERSION:
            raise GoldenError(f"{p}: golden version {g.get('version')!r}, expected {GOLDEN_VERSION}")
        n = int(g["n"])
        ro = np.asarray(g["readout"], dtype=np.int64)
        if ro.ndim != 2 or len(ro) != n or len(g["spike_hashes"]) != n or len(g["input_hashes"]) != n:
            raise GoldenError(f"{p}: unreadable golden file (readout, spike_hashes and input_hashes must "
                              f"hold n = {n} samples)")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, GoldenError):
            raise
        raise GoldenError(f"{p}: unreadable golden file ({e})") from None
    return g


def compare_golden(golden: dict, r: BackendResult, xq: np.ndarray) -> dict:
    """Drift of one backend's outputs from the golden record, on the samples it ran (xq[:n], its inputs):
    those inputs must be the golden ones, then every readout and every spike must be."""
    n = len(r.readout)
    base = {"backend": r.backend, "samples": n}
    if n > golden["n"]:
        return dict(base, ok=False, reason=f"golden has {golden['n']} samples, the run has {n}")
    ins = sample_hashes(xq[:n])
    in_bad = [i for i, h in enumerate(ins) if h != golden["input_hashes"][i]]
    if in_bad:
        return dict(base, ok=False, first_sample=in_bad[0],
                    reason=f"{len(in_bad)} of the {n} inputs differ from the golden inputs, first at sample "
                           f"{in_bad[0]} (dataset, quantization or input order changed)")
    ro = np.asarray(golden["readout"], dtype=np.int64)[:n]
    if ro.shape != r.readout.shape:
        return dict(base, ok=False, reason=f"readout of shape {list(r.readout.shape)}, golden {list(ro.shape)}")
    ro_bad = np.flatnonzero((ro != r.readout).any(axis=1))
    sp_bad = [i for i, h in enumerate(_hashes(r)) if h != golden["spike_hashes"][i]]
    ok = len(ro_bad) == 0 and not sp_bad
    rep = dict(base, ok=ok, readout_drift=int(len(ro_bad)), spike_drift=len(sp_bad))
    if not ok:
        first = min(([int(ro_bad[0])] if len(ro_bad) else []) + sp_bad[:1])
        rep["first_sample"] = first
        rep["reason"] = (f"{len(ro_bad)} readout(s) and {len(sp_bad)} spike hash(es) (which neuron fired at "
                         f"which step) differ from golden; first at sample {first}")
    return rep
