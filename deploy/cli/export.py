"""`saf export` and `saf info`."""
from __future__ import annotations

import json

from saf.deploy.cli.train import add_checkpoint_choice, pick_checkpoint
from saf.hw_targets.base import TargetError
from saf.hw_targets.words import WEIGHT_WORDS
from saf.train.checkpoint import CheckpointError
from saf.train.data import DatasetError
from saf.train.io.outdir import OutputError
from saf.train.spec import SpecError

from saf.export.bundle.store import BundleError, read_manifest
from saf.export.netx.errors import NetxError
from saf.export.nir.errors import NirError
from saf.export.fold.snn import FoldError
from saf.export.ir import IRError
from saf.export.onnx_check import OnnxExportError
from saf.export.pipeline.fit import format_fit
from saf.export.pipeline.snn import ExportError
from saf.export.quantize import QuantizeError

USER_ERRORS = (NirError, NetxError, BundleError, ExportError, FoldError, IRError, OnnxExportError, QuantizeError,
               TargetError, CheckpointError, DatasetError, OutputError, SpecError)
TARGET_NAMES = ("loihi", "loihi2", "loihi1", "onnx", "nir", "netx")
WORDS_HINT_BELOW = 0.99          # export's own same-prediction rate under which the --synapse-words 2 hint shows


def register(sub) -> None:
    p = sub.add_parser("export", help="quantize a checkpoint for a target and write a deployable bundle",
                       description="Fold, quantize and map a trained network; write manifest.json, "
                                   "weights.npz and model.onnx to --out (atomically).")
    p.add_argument("checkpoint", nargs="?", help="model.safetensors or a run directory")
    add_checkpoint_choice(p)
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGET_NAMES)} (loihi = loihi2)")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--calibrate-data", default=None,
                   help="dataset for input quantization and the float-vs-quantized accuracy report")
    p.add_argument("--data-root", default=None, help="directory with MNIST IDX / CIFAR-10 batches")
    p.add_argument("--calibrate-limit", type=int, default=None, help="test samples for the accuracy report")
    p.add_argument("--T", type=int, default=None, help="time steps (default: the checkpoint's)")
    p.add_argument("--input-scale", type=float, default=None, help="x_q = round(x * S), skips calibration")
    p.add_argument("--input-bits", type=int, default=None, help="with --input-scale (default 8)")
    p.add_argument("--input-signed", action="store_true", help="with --input-scale")
    p.add_argument("--random-model", default=None, metavar="NAME",
                   help="export a randomly initialised builtin model instead of a checkpoint (mapping studies)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-model")
    p.add_argument("--sum-pool", choices=("auto", "on", "off"), default="auto",
                   help="a folded AvgPool as a k x k sum-pool stage (graded counts) in front of the next layer "
                        "instead of a k^2 times wider layer: auto = where the target runs it cheaper (Loihi 2: "
                        "fewer cores; ONNX: fewer multiply-adds; never on Loihi 1), on, or off (folded)")
    p.add_argument("--approximate", action="store_true",
                   help="where no exact configuration exists (e.g. T = 16 at lam 0.5), write the network at Loihi's "
                        "native F = 6 anyway, labelled NOT EXACT with each reason; saf verify then measures its "
                        "agreement with the float model (the integer forms must still agree spike for spike)")
    p.add_argument("--synapse-words", type=int, choices=WEIGHT_WORDS, default=1,
                   help="synapse words per weight (loihi2 only): 2 splits each weight into a high word (weight_exp "
                        "7) and a low word into the same neurons, even weights up to 32,766 (~14 bits) at twice "
                        "the synaptic memory (hw_targets/words.py)")
    p.add_argument("--force", action="store_true", help="replace the saf bundle in --out, once the new one is written")
    p.add_argument("--json", action="store_true", help="print the manifest extras as JSON")
    p.add_argument("--dt-exp", type=int, default=None, metavar="K",
                   help="FP checkpoints only: step dt = t_max / 2^K (default 7; saf verify's dt table measures each K)")
    p.set_defaults(func=cmd_export)

    i = sub.add_parser("info", help="summarize a bundle (target, layers, certificate, resources)")
    i.add_argument("bundle")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)


def cmd_export(a) -> int:
    from saf.export.pipeline.snn import export_checkpoint

    if not a.checkpoint and not a.random_model:
        raise ExportError("give a CHECKPOINT (model.safetensors or run directory) or --random-model NAME")
    from saf.train.checkpoint import is_fp_checkpoint

    from saf.export.netx.run_dir import is_netx_run

    if a.checkpoint and not a.random_model and is_netx_run(a.checkpoint):
        from saf.deploy.cli.netx import export_netx_run_cli, export_to_netx
        return export_to_netx(a) if a.target == "netx" else export_netx_run_cli(a)
    if a.checkpoint and not a.random_model:
        a.checkpoint = str(pick_checkpoint(a, quiet=a.json))
    if a.target == "netx":
        from saf.deploy.cli.netx import export_to_netx
        return export_to_netx(a)
    if a.target == "nir":
        return _export_nir(a)
    if a.checkpoint and is_fp_checkpoint(a.checkpoint):
        return _export_fp(a)
    if a.dt_exp is not None:
        raise ExportError(f"--dt-exp applies to FP checkpoints (saf train --method fp); {a.checkpoint or a.random_model} is not one")
    r = export_checkpoint(a.checkpoint, a.target, a.out, calibrate_data=a.calibrate_data, data_root=a.data_root,
                          force=a.force, T=a.T, calibrate_limit=a.calibrate_limit, input_scale=a.input_scale,
                          input_bits=a.input_bits, input_signed=a.input_signed, random_model=a.random_model,
                          seed=a.seed, sum_pool=a.sum_pool, approximate=a.approximate, synapse_words=a.synapse_words,
                          lif_run=_emulator)
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if not k.endswith("_text")}, indent=2, default=str))
        return 0
    print(r["resources_text"])
    print(r["certificate_text"])
    for adv in r.get("advisories", []):
        print(f"  advisory: {adv}")
    if r["fit_text"]:
        print(r["fit_text"])
    if a.synapse_words != 1:
        print(f"synapse words per weight: {a.synapse_words} (high word weight_exp 7 + low word, twice the synaptic "
              f"memory); largest feed-forward |W|: " + ", ".join(f"{l['name']} {l['weight_max']:,}"
                                                    for l in r["quantization"]["layers"]))
    if r["drift_text"]:
        print(r["drift_text"])
    elif r.get("exact_advice"):
        print(f"note: NOT EXACT; what would make it exact: {r['exact_advice']}")
    if a.approximate and "approximate" not in r:
        print("note: --approximate not needed: the bundle is EXACT")
    cal = r.get("calibration")
    if cal and "deployed" in cal:
        print(f"accuracy on {cal['dataset']} ({cal['n']} test samples): float {cal['float_accuracy']:.4f}; deployed: "
              f"{cal['deployed']}")
    elif cal:
        print(f"accuracy on {cal['dataset']} ({cal['n']} test samples): float {cal['float_accuracy']:.4f}, "
              f"quantized{_form(cal)} {cal['quantized_accuracy']:.4f} (change {cal['accuracy_change']:+.4f}), "
              f"same prediction {cal['prediction_agreement']:.2%}")
        if a.synapse_words == 1 and cal["prediction_agreement"] < WORDS_HINT_BELOW and _holds_two_words(a.target):
            print(f"hint: same prediction below {WORDS_HINT_BELOW:.0%} with one synapse word per weight; "
                  f"--synapse-words 2 holds ~14-bit weights (twice the synaptic memory)")
    print(f"bundle written to {a.out} in {r['seconds']:.1f} s")
    return 0


def _form(cal: dict) -> str:
    """Which form gave the quantized accuracy, where it is not the exact SAF form (a NOT EXACT bundle)."""
    form = cal.get("quantized_form", "saf-int")
    return "" if form == "saf-int" else f" ({form}, deployed)"


def _emulator(graph, xq, record_spikes: bool):
    """The deployed integer LIF form for export's drift table and NOT EXACT accuracy (export/pipeline/drift.py)."""
    from saf.deploy.backends.emulator import emulate

    return emulate(graph, xq, record_spikes=record_spikes)


def _holds_two_words(target_name: str) -> bool:
    from saf.hw_targets import get_target

    return get_target(target_name).weight_words_max >= 2


def _export_nir(a) -> int:
    """--target nir: the run as a NIR file (export/nir/from_run.py); the bundle options do not apply."""
    from saf.export.nir.from_run import write_nir

    given = [f for f, v in (("--random-model", a.random_model), ("--calibrate-data", a.calibrate_data),
                            ("--input-scale", a.input_scale), ("--approximate", a.approximate),
                            ("--dt-exp", a.dt_exp), ("--T", a.T), ("--synapse-words 2", a.synapse_words != 1)) if v]
    if given:
        raise ExportError(f"{given[0]} does not apply to --target nir (a NIR file holds the float network)")
    r = write_nir(a.checkpoint, a.out, a.force)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    time = "continuous time (FP)" if "dt" not in r else f"dt {r['dt']:g}, T {r['T']}"
    print(f"NIR graph written to {r['out']}: {r['nodes']} nodes, {r['edges']} edges; {time}, "
          f"reset {r['reset']}, compare {r['compare']}, readout {r['readout']} (graph metadata 'saf'; docs/nir.md)")
    return 0


def _export_fp(a) -> int:
    """An FP checkpoint: discretized at dt = t_max / 2^K (export/fold/fp.py); the integer-net options
    (T, calibration, input quantization, random models) do not apply and are refused if given."""
    from saf.export.pipeline.fp import export_fp

    given = [f for f, v in (("--T", a.T), ("--calibrate-data", a.calibrate_data), ("--calibrate-limit", a.calibrate_limit),
                            ("--input-scale", a.input_scale), ("--input-bits", a.input_bits),
                            ("--input-signed", a.input_signed), ("--random-model", a.random_model),
                            ("--approximate", a.approximate), ("--synapse-words 2", a.synapse_words != 1)) if v]
    if given:
        raise ExportError(f"{given[0]} does not apply to an FP checkpoint ({a.checkpoint}): its steps and input "
                          f"spikes come from --dt-exp and the trained latency code")
    r = export_fp(a.checkpoint, a.target, a.out, dt_exp=a.dt_exp, force=a.force)
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if not k.endswith("_text")}, indent=2, default=str))
        return 0
    print(r["fp_text"])
    print(r["resources_text"])
    print(r["certificate_text"])
    for adv in r.get("advisories", []):
        print(f"  advisory: {adv}")
    print(f"bundle written to {a.out} in {r['seconds']:.1f} s")
    return 0


def summarize(m: dict) -> str:
    lines = [f"saf bundle v{m['format_version']}: target {m['target']}, T={m['T']}, lam={m['lam']} "
             f"(decay D={m['decay']}), input {m['input_shape']} x{m['input_scale']:g} "
             f"({m['input_bits']}-bit{' signed' if m['input_signed'] else ''})"]
    for l in m["layers"]:
        th = f"TH={l['threshold']}" if l["kind"] != "readout" else \
            (f"integrator leaking (decay D={l['decay']})" if l.get("decay") else "integrator (no leak)")
        if l.get("first_spike"):
            th = "first-spike readout (R = T + 1 - first step)"
        elif "du" in l:
            th += f" du={l['du']}"
        if "reset" in l or "compare" in l:          # per-layer modes, shown where not the default
            th += f" fire V {l.get('compare', '>=')} TH<<F, reset {l.get('reset', 'subtract')}"
        pool = f" sum-pool {l['in_pool']}x{l['in_pool']} ->" if l.get("in_pool", 1) > 1 else ""
        words = f" ({l['weight_words']} synapse words)" if l.get("weight_words", 1) != 1 else ""
        lines.append(f"  {l['name']:<10} {l['kind']:<8} {str(l['in_shape']):>14} ->{pool} {str(l['out_shape']):<14} "
                     f"w{l['weight_shape']}{words} {th} F={l['frac_bits']}")
    for f in m.get("feedback", []):
        lines.append(f"  feedback   {f['kind']:<8} layer {f['src']} -> layer {f['dst']} (one-step delay)")
    c = m.get("certificate", {})
    lines.append("certificate: " + ("EXACT" if c.get("exact") else "NOT EXACT: " + "; ".join(c.get("reasons", []))))
    if m.get("approximate"):
        lines.append("approximate (exported with --approximate): " + m["approximate"]["why"])
    if m.get("fit"):
        lines.append(format_fit(m["fit"]))
    r = m.get("resources", {})
    if r.get("cores_available") is not None:
        lines.append(f"resources: {r.get('cores_used')} cores on {r.get('chips_used')} chip(s) of {r.get('system')}")
    elif r:
        lines.append(f"resources: {r.get('parameters')} parameters, {r.get('parameter_bytes')} bytes")
    sp = m.get("sum_pool") or {}
    if sp.get("memory_per_layer"):
        from saf.hw_targets.report import format_pool_comparison
        lines.append(format_pool_comparison(sp["memory_per_layer"]))
    cal = m.get("calibration")
    if cal and "deployed" in cal:
        lines.append(f"accuracy: float {cal['float_accuracy']:.4f}; deployed: {cal['deployed']}")
    elif cal:
        lines.append(f"accuracy: float {cal['float_accuracy']:.4f} -> quantized {cal['quantized_accuracy']:.4f}")
    meta = m.get("meta", {})
    src = meta.get("checkpoint") or f"random {meta.get('random_model')}"
    lines.append(f"source: {src}; files: {', '.join(m.get('files', {}))}")
    return "\n".join(lines)


def lava_line(bundle) -> str:
    """Which Lava model runs this bundle as simulated Loihi (`saf run --backend lava`), and why not."""
    from saf.deploy.backends.registry import lava_model_for, require_lava
    from saf.deploy.backends.spec import BackendError
    from saf.export.bundle.store import load_graph

    try:
        require_lava("lava")
    except BackendError:
        return "Lava: not installed here (lava-nc 0.10.0, Python 3.10)"
    spec, why = lava_model_for(load_graph(bundle))
    if not why:
        return f"Lava: backend lava runs it ({spec.description})"
    return (f"Lava: backend lava refuses it ({why}); backend lava-own runs it "
            f"({spec.description})")


def cmd_info(a) -> int:
    m = read_manifest(a.bundle)
    from saf.export.energy import upper_bound_estimate
    from saf.hw_targets.energy import format_estimate

    est = upper_bound_estimate(m)
    if a.json:
        print(json.dumps(dict(m, loihi_estimate=est) if est else m, indent=2))
        return 0
    print(summarize(m))
    print(lava_line(a.bundle))
    if est:
        print(f"energy/latency per inference, {est['activity']}:")
        print(format_estimate(est))
    else:
        print(f"energy/latency: no Loihi estimate for target {m.get('target')} (export with --target loihi)")
    return 0
