"""`saf export` of an FP checkpoint (train/methods/fp/net.py): discretize (fold_fp.py) -> certificate ->
resource check -> bundle (atomic), with the continuous weights travelling in the bundle.

The bundle holds manifest.json, weights.npz, model.onnx and fp-model.safetensors (the FP checkpoint,
copied and authenticated like every bundle file), so `saf verify` can run the continuous reference
and measure the deployment's error at other dt (the dt table). The latency code and dt are in the
manifest's meta["fp"], so `saf run`/`saf verify` encode dataset samples into spike frames without it.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from saf.core.outdir import check_target

from saf.export.bundle.store import BUNDLE_DIR, FP_SOURCE_FILE, ONNX_FILE, write_bundle
from saf.export.proof.certificate import certify
from saf.export.fold.fp import DT_EXP_DEFAULT, FoldFPError, fold_fp


def export_fp(checkpoint, target_name: str, out, dt_exp=None, force: bool = False) -> dict:
    """Export an FP checkpoint; returns the manifest extras plus *_text lines for the CLI. Raises
    ExportError / CheckpointError / TargetError with one line."""
    from saf.hw_targets import get_target
    from saf.train.checkpoint import resolve
    from saf.train.methods.fp.checkpoint import load_fp_checkpoint

    from saf.export.onnx_model import save_onnx_model
    from saf.export.pipeline.snn import ExportError, check_fit

    t0 = time.perf_counter()
    target = get_target(target_name)
    out = Path(out)
    check_target(out, (BUNDLE_DIR,), force)
    ckpt = resolve(checkpoint)
    data = ckpt.read_bytes()                       # read once: hashed, loaded and copied from these bytes
    net, cfg = load_fp_checkpoint(ckpt, data=data)
    k = DT_EXP_DEFAULT if dt_exp is None else int(dt_exp)
    meta = {"checkpoint": str(ckpt), "checkpoint_sha256": hashlib.sha256(data).hexdigest(), "target_name": target_name,
            "readout": "first_spike", "spec": {"name": cfg.get("model") or "fp"},
            "train_config": {key: cfg.get(key) for key in ("method", "dataset", "model", "seed", "epochs")}}
    try:
        graph = fold_fp(net, k, target, meta)
    except FoldFPError as e:
        raise ExportError(str(e)) from None
    cert = certify(graph)
    wraps = [c for c in cert.checks if c.check == "current_reg" and not c.ok]
    if wraps:                                      # Loihi's u register would wrap: integer forms differ
        raise ExportError(f"layer {wraps[0].layer}: {wraps[0].detail}")
    resources, advisories = check_fit(graph, target, meta["spec"]["name"])
    fp = graph.meta["fp"]
    extra = {"certificate": cert.to_dict(), "resources": resources.to_dict(), "advisories": advisories,
             "fp_discretization": {key: fp[key] for key in ("k", "dt", "T", "du", "D", "scale", "threshold")},
             "target_description": target.description}
    writers = {ONNX_FILE: lambda p: save_onnx_model(graph, p, spikes=True),
               FP_SOURCE_FILE: lambda p: Path(p).write_bytes(data)}
    write_bundle(graph, out, extra=extra, writers=writers, force=force)
    extra["seconds"] = time.perf_counter() - t0
    extra["resources_text"] = resources.format()
    extra["certificate_text"] = cert.format()
    extra["fp_text"] = (f"FP discretization: dt = t_max / 2^{k} = {fp['dt']:g} ({'default' if dt_exp is None else '--dt-exp'}), "
                        f"T = ceil(t_sim / dt) = {fp['T']} steps, du = {fp['du']} (e^-alpha dt = {1 - (fp['du'] + 1) / 4096:.5f}"
                        f" stored), D = {fp['D']}, scale S = {fp['scale']:.4g}, TH = {fp['threshold']}; "
                        f"inputs at frame round(t / dt); approximate (see saf verify's dt table)")
    return extra
