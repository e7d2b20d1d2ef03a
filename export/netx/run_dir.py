"""The run `saf import model.net --out RUN` writes, and `saf export RUN --target loihi|onnx` of it.

RUN holds the file's bytes (source.net, hashed at import) and netx.json (T, dataset, the file's name and
sha256). Nothing is quantized: the bundle's graph is the IR of the file's integers (to_graph.py), so the
bundle runs what netx runs; its certificate and resource check are the ones every bundle gets, and the
bundle carries source.net for the `netx` verify backend (lava-dl's own loader on the same bytes).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

from saf.export.bundle.store import BUNDLE_DIR, NETX_SOURCE_FILE, ONNX_FILE, write_bundle
from saf.export.netx.errors import NetxError
from saf.export.netx.to_graph import netx_graph
from saf.core.counts import check_count
from saf.core.outdir import OutputKind, Staged, check_target

RUN_FILE = "netx.json"
RUN_FORMAT = "saf-netx-import"


def _is_netx_run_file(path: Path) -> bool:
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == RUN_FORMAT


NETX_RUN = OutputKind("saf netx import", RUN_FILE, _is_netx_run_file, (RUN_FILE, NETX_SOURCE_FILE))


def is_netx_run(path) -> bool:
    p = Path(path)
    return p.is_dir() and _is_netx_run_file(p / RUN_FILE)


def write_netx_run(model, out, T: int, dataset: Optional[str] = None, force: bool = False):
    """(run path, graph): the file checked (the whole IR built) before anything is written."""
    model = Path(model)
    check_count("--T", T, 1, NetxError)
    check_target(out, (NETX_RUN,), force)
    data = model.read_bytes()
    g = netx_graph(model, T, dataset=dataset)
    if hashlib.sha256(data).hexdigest() != g.meta["netx"]["sha256"]:
        raise NetxError(f"{model}: changed while it was read")
    rec = {"format": RUN_FORMAT, "file": model.name, "sha256": g.meta["netx"]["sha256"], "T": int(T),
           "dataset": dataset}
    with Staged(out, (NETX_RUN,), force) as tmp:
        (Path(tmp) / NETX_SOURCE_FILE).write_bytes(data)
        (Path(tmp) / RUN_FILE).write_text(json.dumps(rec, indent=2))
    return Path(out), g


def read_netx_run(run, T: Optional[int] = None, target: str = "loihi2") -> tuple:
    """(graph, source bytes, record) of a run write_netx_run made; --T overrides the run's T."""
    run = Path(run)
    rec = json.loads((run / RUN_FILE).read_text())
    if not (isinstance(rec.get("T"), int) and rec["T"] >= 1 and isinstance(rec.get("file"), str)):
        raise NetxError(f"{run / RUN_FILE}: needs 'T' (an integer >= 1) and 'file' (saf import writes them)")
    src = run / NETX_SOURCE_FILE
    data = src.read_bytes() if src.is_file() else b""
    if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
        raise NetxError(f"{src}: missing or changed since saf import (sha256 differs from {RUN_FILE})")
    g = netx_graph(src, int(T if T is not None else rec["T"]), target=target, dataset=rec.get("dataset"))
    g.meta["netx"]["file"] = rec["file"]
    return g, data, rec


def export_netx_run(run, target_name: str, out, force: bool = False, T: Optional[int] = None) -> dict:
    """The bundle of an imported netx run on `target_name` (module docstring); the manifest extras."""
    from saf.export.onnx_model import save_onnx_model
    from saf.export.pipeline.fit import check_fit
    from saf.export.proof.certificate import certify
    from saf.hw_targets import get_target

    t0 = time.perf_counter()
    target = get_target(target_name)
    check_target(Path(out), (BUNDLE_DIR,), force)
    g, data, rec = read_netx_run(run, T, target.name)
    cert = certify(g)
    resources, advisories = check_fit(g, target, rec["file"])
    extra = {"certificate": cert.to_dict(), "resources": resources.to_dict(), "advisories": advisories,
             "target_description": target.description}
    writers = {ONNX_FILE: lambda p: save_onnx_model(g, p, spikes=True),
               NETX_SOURCE_FILE: lambda p: Path(p).write_bytes(data)}
    write_bundle(g, out, extra=extra, writers=writers, force=force)
    return dict(extra, seconds=time.perf_counter() - t0, resources_text=resources.format(),
                certificate_text=cert.format(), graph=g)
