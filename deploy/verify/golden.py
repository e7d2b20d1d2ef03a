"""Golden outputs: readout sums and per-sample spike-count hashes of a bundle on fixed inputs, so
conversion fidelity is regression-tested (`saf verify --golden DIR`, `--update-golden`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saf.deploy.verify.compare import spike_count_hashes
from saf.export.result import BackendResult

GOLDEN_FILE = "golden.json"
GOLDEN_VERSION = 1


class GoldenError(ValueError):
    """Golden outputs missing or unreadable (one line)."""


def golden_record(r: BackendResult, dataset: str, inputs_sha256: str) -> dict:
    return {"version": GOLDEN_VERSION, "backend": r.backend, "dataset": dataset, "n": int(len(r.readout)),
            "inputs_sha256": inputs_sha256, "readout": r.readout.astype(np.int64).tolist(),
            "spike_count_hashes": spike_count_hashes(r)}


def inputs_hash(xq: np.ndarray) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(np.asarray(xq, np.int64)).tobytes()).hexdigest()


def write_golden(directory, record: dict) -> Path:
    from saf.train.io.files import atomic_write

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
        if g.get("version") != GOLDEN_VERSION:
            raise GoldenError(f"{p}: golden version {g.get('version')!r}, expected {GOLDEN_VERSION}")
        np.asarray(g["readout"], dtype=np.int64)
        g["spike_count_hashes"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, GoldenError):
            raise
        raise GoldenError(f"{p}: unreadable golden file ({e})") from None
    return g


def compare_golden(golden: dict, r: BackendResult, inputs_sha256: str) -> dict:
    """Drift of one backend's outputs from the golden record (on the samples it ran)."""
    n = len(r.readout)
    if golden["inputs_sha256"] != inputs_sha256 and n == golden["n"]:
        return {"backend": r.backend, "ok": False, "samples": n,
                "reason": "inputs differ from the golden inputs (dataset or quantization changed)"}
    ro = np.asarray(golden["readout"], dtype=np.int64)[:n]
    if len(ro) < n:
        return {"backend": r.backend, "ok": False, "samples": n,
                "reason": f"golden has {len(ro)} samples, the run has {n}"}
    ro_bad = np.flatnonzero((ro != r.readout).any(axis=1))
    hashes = spike_count_hashes(r)
    sp_bad = [i for i, h in enumerate(hashes) if h != golden["spike_count_hashes"][i]]
    ok = len(ro_bad) == 0 and not sp_bad
    rep = {"backend": r.backend, "ok": ok, "samples": n, "readout_drift": int(len(ro_bad)),
           "spike_drift": len(sp_bad)}
    if not ok:
        first = min(([int(ro_bad[0])] if len(ro_bad) else []) + sp_bad[:1])
        rep["first_sample"] = first
        rep["reason"] = (f"{len(ro_bad)} readout(s) and {len(sp_bad)} spike-count hash(es) differ from golden; "
                         f"first at sample {first}")
    return rep
