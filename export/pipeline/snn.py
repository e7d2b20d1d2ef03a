"""checkpoint -> fold -> quantize -> certificate -> resource check -> bundle (atomic).

Imports train (checkpoint, data) and hw_targets, never deploy or lava: the bundle it writes holds
everything the Lava backend needs to build its process graph (weights.npz + manifest.json) and
the ONNX model (model.onnx).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from saf.hw_targets.report import format_pool_comparison, pool_comparison
from saf.core.outdir import check_target

from saf.export.bundle.store import BUNDLE_DIR, ONNX_FILE, SOURCE_FILE, write_bundle
from saf.export.fold.snn import fold_network
from saf.export.fold.dsr import fold_dsr
from saf.export.ir import Graph
from saf.export.pipeline.drift import drift_table, exact_advice, format_drift
from saf.export.pipeline.fit import (APPROX_FRAC_BITS, CAL_SAMPLES, ExportError, InputQuant, Source, build,  # noqa: F401
                                     check_fit, exact_possible, fit_report, format_fit, input_candidates,
                                     needs_search, refusal, search)
from saf.export.quantize import input_quantization
from saf.export.resources import check_resources
from saf.core.counts import check_count


def _accuracy_report(net, graph: Graph, data, T: int, limit: Optional[int], approximate: bool = False,
                     lif_run: Optional[Callable] = None, exact: bool = True) -> dict:
    """Float accuracy (trained model, SAF form) vs quantized accuracy: the exact integer SAF form, which is
    the deployed form only when the certificate is exact; for a NOT EXACT bundle the deployed integer LIF
    form itself when the caller gives lif_run (drift.py). An --approximate bundle reports the float accuracy
    alone and leaves the deployed one to saf verify's agreement table (and export's drift table)."""
    from saf.train.evaluate import evaluate, float_form

    from saf.export.proof.saf_int import run_saf_int

    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    fl = evaluate(net, x if getattr(net, "grid", None) is not None else x.double(), y, T, float_form(net))
    if approximate:
        return {"dataset": data.name, "n": int(len(y)), "float_accuracy": fl["accuracy"],
                "deployed": "NOT EXACT (--approximate): saf verify measures the deployed accuracy"}
    xq = graph.quantize_input(x.numpy())
    deployed = lif_run is not None and not exact
    r = lif_run(graph, xq, False) if deployed else run_saf_int(graph, xq, record_spikes=False)
    q_acc = float((r.readout.argmax(1) == y.numpy()).mean())
    agree = float((r.readout.argmax(1) == fl["predictions"].numpy()).mean())
    return {"dataset": data.name, "n": int(len(y)), "float_accuracy": fl["accuracy"],
            "quantized_accuracy": q_acc, "accuracy_change": q_acc - fl["accuracy"],
            "prediction_agreement": agree, "quantized_form": "integer LIF (emulator)" if deployed else "saf-int"}


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
    check_count("--T", T, 1, ExportError)
    if calibrate_limit is not None:
        check_count("--calibrate-limit", calibrate_limit, 1, ExportError)
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


def check_synapse_words(words, target) -> int:
    """--synapse-words as an int the target holds, else one line naming the flag."""
    from saf.hw_targets.words import WEIGHT_WORDS

    if isinstance(words, bool) or words not in WEIGHT_WORDS:
        raise ExportError(f"--synapse-words must be one of {', '.join(map(str, WEIGHT_WORDS))}, got {words!r}")
    if words > target.weight_words_max:
        raise ExportError(f"--synapse-words {words}: target {target.name} holds {target.weight_words_max} synapse "
                          f"word per weight (two words: --target loihi2)")
    return int(words)


def export_checkpoint(checkpoint, target_name: str, out, calibrate_data: Optional[str] = None,
                      data_root: Optional[str] = None, force: bool = False, T: Optional[int] = None,
                      calibrate_limit: Optional[int] = None, input_scale: Optional[float] = None,
                      input_bits: Optional[int] = None, input_signed: bool = False,
                      random_model: Optional[str] = None, seed: int = 0, sum_pool: str = "auto",
                      approximate: bool = False, synapse_words: int = 1, lif_run: Optional[Callable] = None) -> dict:
    """Export a checkpoint to a bundle directory. Returns the manifest extras (certificate,
    resources, quantization, calibration). Raises a user error with one clear line.
    sum_pool: "auto" | "on" | "off", where a folded AvgPool becomes a sum-pool stage (export/fold/sum_pool.py).
    approximate: write a NOT EXACT bundle where no exact configuration exists (export/pipeline/fit.py).
    synapse_words: synapse words per weight of every layer (hw_targets/words.py; 2 only on loihi2).
    lif_run(graph, xq, record_spikes) -> BackendResult: the deployed integer LIF form (the CLI passes the
    emulator; export does not import deploy): a NOT EXACT bundle then gets the drift table (drift.py) and
    its calibration accuracy from the deployed form."""
    from saf.hw_targets import get_target
    from saf.train.data import load_dataset
    from saf.train.data.coding import InputCoding

    from saf.export.onnx_model import save_onnx_model

    t0 = time.perf_counter()
    target = get_target(target_name)
    out = Path(out)
    synapse_words = check_synapse_words(synapse_words, target)
    check_options(T, calibrate_data, calibrate_limit, input_scale, input_bits, input_signed)
    check_target(out, (BUNDLE_DIR,), force)               # before any work: nothing is lost to a typo
    net, spec, cfg, prov, ckpt_bytes = _source(checkpoint, random_model, seed)
    trained = None
    if getattr(net, "grid", None) is not None:         # grid-trained: its float32 forward, before .double()
        import copy
        trained = copy.deepcopy(net)
    net = net.double()
    T = int(T if T is not None else (spec.get("T") or cfg.get("T", 6)))
    check_count("--T", T, 1, ExportError)
    data = None
    coding = InputCoding.from_config(cfg)             # the encoder / binning the model was trained with
    dataset = calibrate_data or (None if input_scale is not None else cfg.get("dataset"))
    if dataset:
        data = load_dataset(dataset, data_root or cfg.get("data_root"), T=T, coding=coding)
        if tuple(data.input_shape) != tuple(spec["input_shape"]):
            raise ExportError(f"dataset {data.name} has input {list(data.input_shape)}, the model expects "
                              f"{list(spec['input_shape'])}")
    peak = None
    if input_scale is not None:
        first = InputQuant(float(input_scale), 8 if input_bits is None else int(input_bits), bool(input_signed), False)
    elif data is not None:
        x = data.x_train
        first = InputQuant(*input_quantization(float(x.max()), float(x.min()), data.input_scale))
        peak = max(abs(float(x.max())), abs(float(x.min())))
    else:
        raise ExportError("no dataset to calibrate the input quantization: pass --calibrate-data NAME "
                          "or --input-scale S [--input-bits B]")
    is_dsr = "dsr" in spec                     # --method dsr: thresholds folded to 1 (fold_dsr.py)
    layers, feedback = fold_dsr(net) if is_dsr else fold_network(net)
    meta = dict(prov, spec=spec, theta=net.theta, target_name=target_name,
                readout=net.readout_kind.name,
                train_config={k: cfg.get(k) for k in ("method", "dataset", "lam", "theta", "T", "epochs", "seed")})
    src = Source(layers, feedback, target, T, net.lam, net.theta, net.readout_kind.leaks_with_lam,
                 net.dsr_alpha if is_dsr else 1.0, meta, {fl.name: fl.pool for fl in layers if fl.pool > 1}, sum_pool,
                 coding.to_dict() if data is not None and data.time_steps is not None else None,
                 spec.get("name", "network"), synapse_words)
    chosen, fit = _fit(src, first, peak, net, data, approximate) if trained is None else \
        _grid(trained, ckpt_bytes, prov["checkpoint"], src,
              dict(T=T if T != int(net.grid.T) else None, **{"--input-scale": input_scale,
                   "--synapse-words": synapse_words if synapse_words != 1 else None,
                   "--approximate": approximate or None}))
    graph, qrep, folded, pool_choice = chosen.graph, chosen.qrep, chosen.folded, chosen.pool_choice
    cert, resources, advisories = chosen.cert, chosen.resources, chosen.advisories
    extra = {"certificate": cert.to_dict(), "resources": resources.to_dict(), "advisories": advisories,
             "quantization": qrep.to_dict(), "target_description": target.description, **fit}
    if synapse_words != 1:             # omitted at one word: every existing bundle stays byte-identical
        extra["synapse_words"] = synapse_words
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
    if not cert.exact and trained is None:     # a grid-trained net's own forward is the integer form (grid.py)
        extra.update(_drift(src, net, graph, data, lif_run))
    if calibrate_data and data is not None:
        extra["calibration"] = _accuracy_report(trained or net, graph, data, T, calibrate_limit, "approximate" in fit,
                                                lif_run, cert.exact)
    writers = {ONNX_FILE: lambda p: save_onnx_model(graph, p, spikes=True)}
    if ckpt_bytes is not None:       # the trained float weights travel with the bundle (saf-float)
        writers[SOURCE_FILE] = lambda p: Path(p).write_bytes(ckpt_bytes)     # the bytes hashed and loaded
    write_bundle(graph, out, extra=extra, writers=writers, force=force)
    extra["seconds"] = time.perf_counter() - t0
    extra["resources_text"] = resources.format() + (f"\n{pool_text}" if pool_text else "")
    extra["certificate_text"] = cert.format()
    extra["fit_text"] = format_fit(fit["fit"]) if "fit" in fit else ""
    extra["drift_text"] = "\n".join(format_drift(extra["drift"], extra.get("exact_advice"))) if "drift" in extra else ""
    if "approximate" in fit:
        extra["fit_text"] = "approximate: " + fit["approximate"]["summary"]
    return extra


def _grid(trained, ckpt_bytes, where: str, src: Source, flags: dict) -> tuple:
    """A grid-trained checkpoint's own integer network (export/pipeline/grid.py: no search, no rounding)."""
    from saf.export.pipeline.grid import grid_attempt

    given = [k if k.startswith("--") else "--T" for k, v in flags.items() if v is not None]
    a = grid_attempt(trained, ckpt_bytes, where, src, given)
    return a, {"grid": {"target": trained.grid.target, "frac_bits": int(trained.grid.frac_bits),
                        "input_scale": trained.grid.input_scale, "input_bits": int(trained.grid.input_bits)}}


def _fit(src: Source, first: InputQuant, peak, net, data, approximate: bool) -> tuple:
    """(chosen Attempt, manifest extras {"fit": ...} / {"approximate": ...} / {}): the network as
    calibrated when it is exact as it is, else the search's best EXACT configuration, else (with
    --approximate) the network at F = APPROX_FRAC_BITS labelled NOT EXACT, else ExportError naming the
    alternatives (export/pipeline/fit.py)."""
    a = build(src, first)
    if not exact_possible(src):                  # a non-dyadic leak is NOT EXACT by nature, as before
        if a.error:
            raise ExportError(a.error)
        return a, ({"approximate": _approx_record(a, "the leak is not dyadic")} if approximate else {})
    if not needs_search(a):
        return a, {}
    if not a.searchable:                         # the neuron model, layer kinds, cores: nothing to search
        raise ExportError(a.error, a.rules)
    quants = input_candidates(first, peak) if peak is not None else [first]
    cal = None
    if data is not None:
        x, y = data.x_train[:CAL_SAMPLES], data.y_train[:CAL_SAMPLES]
        cal = (x.numpy(), y.numpy())
    best, tried = search(src, a, quants, cal)
    if best is not None:
        float_acc = None
        if cal is not None:
            from saf.train.evaluate import evaluate, float_form
            float_acc = float(evaluate(net, x.double(), y, src.T, float_form(net))["accuracy"])
        return best, {"fit": fit_report(a, best, tried, float_acc, len(cal[1]) if cal else 0)}
    if not approximate:
        raise ExportError(refusal(src, a, tried))
    same = not a.error and int(a.graph.layers[0].frac_bits) == APPROX_FRAC_BITS
    ap = a if same else build(src, first, frac_bits=APPROX_FRAC_BITS)
    if ap.error:
        raise ExportError(f"{src.name}: --approximate at F = {APPROX_FRAC_BITS} does not fit either: {ap.error}")
    return ap, {"approximate": _approx_record(ap, f"no exact configuration (searched {len(tried)}): "
                                                  f"{a.why.split('; ')[0]}")}


def _drift(src: Source, net, graph: Graph, data, lif_run: Optional[Callable]) -> dict:
    """Manifest extras of a NOT EXACT bundle: "drift" (drift.py, on the CAL_SAMPLES calibration samples: needs
    calibration data and lif_run) and, for a non-dyadic leak, "exact_advice" (what would make it exact)."""
    out = {} if exact_possible(src) else {"exact_advice": exact_advice(src.lam, src.T)}
    if data is not None and lif_run is not None:
        x = data.x_train[:CAL_SAMPLES].numpy()
        out["drift"] = drift_table(net, graph, x, lambda g, xq: lif_run(g, xq, True),
                                   f"calibration samples ({data.name} training set)")
    return out


def _approx_record(a, why: str) -> dict:
    """meta["approximate"] of a bundle exported with --approximate (also kept in its graph's meta)."""
    rec = {"why": why, "frac_bits": int(a.graph.layers[0].frac_bits), "certificate_reasons": a.cert.reasons,
           "summary": f"NOT EXACT by request ({why}); F = {int(a.graph.layers[0].frac_bits)}; each reason is in "
                      f"the certificate; saf verify measures the agreement with the float model"}
    a.graph.meta["approximate"] = rec
    return rec
