"""checkpoint -> fold -> quantize -> certificate -> resource check -> bundle (atomic).

Imports train (checkpoint, data) and hw_targets, never deploy or lava: the bundle it writes holds
everything the Lava backend needs to build its process graph (weights.npz + manifest.json) and
the ONNX model (model.onnx).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from saf.hw_targets import Severity
from saf.hw_targets.report import format_pool_comparison, pool_comparison
from saf.train.io.outdir import check_target

from saf.export.bundle.store import BUNDLE_DIR, ONNX_FILE, SOURCE_FILE, write_bundle
from saf.export.proof.certificate import certify
from saf.export.fold.snn import fold_network
from saf.export.fold.dsr import fold_dsr
from saf.export.ir import Graph
from saf.export.quantize import input_quantization, quantize
from saf.export.resources import check_resources
from saf.export.fold.sum_pool import SumPoolError, choose_pools


class ExportError(ValueError):
    """The export cannot go on; one clear line naming the file or layer."""


def _named(v) -> str:
    """A violation's message, naming its rule."""
    tag = f"(rule {v.rule})"
    return v.message if tag in v.message else f"{v.message} {tag}"


def check_fit(graph: Graph, target, name: str) -> tuple:
    """(ResourceReport, advisory lines) of graph on target; ExportError (one line) when it does not fit.
    ADVISORY rules (ranges) are exactness questions, answered by the certificate (a saturating layer
    makes it "not exact" with the reason) and by the ONNX builder (int64 where float32 would round);
    they do not stop the export. Everything else (neurons, formats, kinds, fit) does: a target that
    refuses the neuron model is reported first; every rule's message names the rule."""
    resources, violations = check_resources(graph, target)
    advisories = [str(v) for v in violations if v.severity == Severity.ADVISORY]
    refused = [_named(v) for v in violations if v.severity == Severity.REFUSE]
    errors = [_named(v) for v in violations if v.severity == Severity.ERROR]
    if refused or errors or not resources.fits:
        msgs = refused + list(resources.problems) + errors
        more = f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else ""
        raise ExportError(f"{name} does not fit {target.name}: {msgs[0]}{more}")
    return resources, advisories


def _accuracy_report(net, graph: Graph, data, T: int, limit: Optional[int]) -> dict:
    """Float accuracy (trained model, SAF form) vs quantized accuracy (exact integer SAF form)."""
    from saf.train.evaluate import evaluate

    from saf.export.proof.saf_int import run_saf_int

    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    fl = evaluate(net, x.double(), y, T, "saf")
    xq = graph.quantize_input(x.numpy())
    r = run_saf_int(graph, xq, record_spikes=False)
    q_acc = float((r.readout.argmax(1) == y.numpy()).mean())
    agree = float((r.readout.argmax(1) == fl["predictions"].numpy()).mean())
    return {"dataset": data.name, "n": int(len(y)), "float_accuracy": fl["accuracy"],
            "quantized_accuracy": q_acc, "accuracy_change": q_acc - fl["accuracy"],
            "prediction_agreement": agree}


def _source(checkpoint, random_model: Optional[str], seed: int):
    """(net, spec, cfg, provenance, checkpoint bytes) from a checkpoint (read once: hashed, loaded and
    copied into the bundle from the same bytes), or a randomly initialised builtin model (bytes None)."""
    import hashlib

    from saf.train.checkpoint import load_model, resolve

    if random_model:
        import torch

        from saf.train.modules.network import SpikingNet
        from saf.train.spec import load_spec, with_neuron

        torch.manual_seed(seed)
        spec = with_neuron(load_spec(random_model))
        return SpikingNet(spec), spec, {}, {"checkpoint": None, "random_model": random_model, "seed": seed}, None
    ckpt = resolve(checkpoint)
    data = ckpt.read_bytes()
    net, spec, cfg = load_model(ckpt, data=data)
    return net, spec, cfg, {"checkpoint": str(ckpt), "checkpoint_sha256": hashlib.sha256(data).hexdigest()}, data


def check_options(T, calibrate_data, calibrate_limit, input_scale, input_bits, input_signed) -> None:
    """Every numeric option in range, and none given where it would be silently ignored."""
    if T is not None and T < 1:
        raise ExportError(f"--T must be >= 1, got {T}")
    if calibrate_limit is not None:
        if calibrate_limit < 1:
            raise ExportError(f"--calibrate-limit must be >= 1, got {calibrate_limit}")
        if not calibrate_data:
            raise ExportError("--calibrate-limit applies to --calibrate-data's accuracy report: give --calibrate-data NAME")
    if input_scale is None:
        if input_bits is not None or input_signed:
            raise ExportError("--input-bits/--input-signed apply with --input-scale S (calibration chooses them otherwise)")
        return
    if not (input_scale > 0 and np.isfinite(input_scale)):
        raise ExportError(f"--input-scale must be a positive number, got {input_scale}")
    if input_bits is not None and not (1 <= int(input_bits) <= 24):
        raise ExportError(f"--input-bits must be in 1..24, got {input_bits}")


def export_checkpoint(checkpoint, target_name: str, out, calibrate_data: Optional[str] = None,
                      data_root: Optional[str] = None, force: bool = False, T: Optional[int] = None,
                      calibrate_limit: Optional[int] = None, input_scale: Optional[float] = None,
                      input_bits: Optional[int] = None, input_signed: bool = False,
                      random_model: Optional[str] = None, seed: int = 0, sum_pool: str = "auto") -> dict:
    """Export a checkpoint to a bundle directory. Returns the manifest extras (certificate,
    resources, quantization, calibration). Raises a user error with one clear line.
    sum_pool: "auto" | "on" | "off", where a folded AvgPool becomes a sum-pool stage (export/fold/sum_pool.py)."""
    from saf.hw_targets import get_target
    from saf.train.data import load_dataset
    from saf.train.data.coding import InputCoding

    from saf.export.onnx_model import save_onnx_model

    t0 = time.perf_counter()
    target = get_target(target_name)
    out = Path(out)
    check_options(T, calibrate_data, calibrate_limit, input_scale, input_bits, input_signed)
    check_target(out, (BUNDLE_DIR,), force)               # before any work: nothing is lost to a typo
    net, spec, cfg, prov, ckpt_bytes = _source(checkpoint, random_model, seed)
    net = net.double()
    T = int(T if T is not None else (spec.get("T") or cfg.get("T", 6)))
    if T < 1:
        raise ExportError(f"--T must be >= 1, got {T}")
    data = None
    coding = InputCoding.from_config(cfg)             # the encoder / binning the model was trained with
    dataset = calibrate_data or (None if input_scale is not None else cfg.get("dataset"))
    if dataset:
        data = load_dataset(dataset, data_root or cfg.get("data_root"), T=T, coding=coding)
        if tuple(data.input_shape) != tuple(spec["input_shape"]):
            raise ExportError(f"dataset {data.name} has input {list(data.input_shape)}, the model expects "
                              f"{list(spec['input_shape'])}")
    if input_scale is not None:
        bits = 8 if input_bits is None else int(input_bits)
        scale, signed, exact_in = float(input_scale), bool(input_signed), False
    elif data is not None:
        x = data.x_train
        scale, bits, signed, exact_in = input_quantization(float(x.max()), float(x.min()), data.input_scale)
    else:
        raise ExportError("no dataset to calibrate the input quantization: pass --calibrate-data NAME "
                          "or --input-scale S [--input-bits B]")
    is_dsr = "dsr" in spec                     # --method dsr: thresholds folded to 1 (fold_dsr.py)
    layers, feedback = fold_dsr(net) if is_dsr else fold_network(net)
    meta = dict(prov, spec=spec, theta=net.theta, input_exact=exact_in, target_name=target_name,
                readout=net.readout_kind.name,
                train_config={k: cfg.get(k) for k in ("method", "dataset", "lam", "theta", "T", "epochs", "seed")})
    graph, qrep = quantize(layers, feedback, T=T, lam=net.lam, theta=net.theta, target=target,
                           input_scale=scale, input_bits=bits, input_signed=signed, input_exact=exact_in,
                           meta=meta, readout_leaks=net.readout_kind.leaks_with_lam,
                           alpha=net.alpha if is_dsr else 1.0)
    if data is not None and data.time_steps is not None:   # trained on x[t]: deploy feeds the same trains
        graph.input_time_varying = True
        graph.meta["input_coding"] = coding.to_dict()
    folded = graph
    try:
        graph, pool_choice = choose_pools(graph, {fl.name: fl.pool for fl in layers if fl.pool > 1}, target,
                                          sum_pool)
    except SumPoolError as e:
        raise ExportError(str(e)) from None
    cert = certify(graph)
    resources, advisories = check_fit(graph, target, spec.get("name", "network"))
    extra = {"certificate": cert.to_dict(), "resources": resources.to_dict(), "advisories": advisories,
             "quantization": qrep.to_dict(), "target_description": target.description}
    pool_text = ""
    if pool_choice.candidates:
        extra["sum_pool"] = pool_choice.to_dict()
        if resources.cores_available is not None:      # Loihi: synaptic memory per layer, folded vs pooled
            before = resources if folded is graph else \
                (pool_choice.folded_report or check_resources(folded, target)[0])
            rows = pool_comparison(before, resources)
            extra["sum_pool"]["memory_per_layer"] = rows
            extra["sum_pool"]["cores_folded"], extra["sum_pool"]["chips_folded"] = before.cores_used, before.chips_used
            pool_text = format_pool_comparison(rows, before, resources)
        kept = "; ".join(f"{n}: {r}" for n, r in pool_choice.reasons.items())
        pool_text = "\n".join(x for x in [
            f"sum pool ({sum_pool}): " + (", ".join(f"{n} {k}x{k}" for n, k in pool_choice.pooled.items())
                                          or "none") + (f"; folded: {kept}" if kept else ""), pool_text] if x)
    if calibrate_data and data is not None:
        extra["calibration"] = _accuracy_report(net, graph, data, T, calibrate_limit)
    writers = {ONNX_FILE: lambda p: save_onnx_model(graph, p, spikes=True)}
    if ckpt_bytes is not None:       # the trained float weights travel with the bundle (saf-float)
        writers[SOURCE_FILE] = lambda p: Path(p).write_bytes(ckpt_bytes)     # the bytes hashed and loaded
    write_bundle(graph, out, extra=extra, writers=writers, force=force)
    extra["seconds"] = time.perf_counter() - t0
    extra["resources_text"] = resources.format() + (f"\n{pool_text}" if pool_text else "")
    extra["certificate_text"] = cert.format()
    return extra
