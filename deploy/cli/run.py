"""`saf run`, `saf verify` and `saf demo`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saf.train.data import DatasetError
from saf.core.outdir import check_file_target

from saf.deploy.backends.registry import BACKENDS, FAULTS, LAVA_BACKENDS, BackendError, Bundle, require_lava
from saf.core.counts import check_count
from saf.deploy.verify.report_io import FUZZ_FAILURE
from saf.deploy.verify.plan import DEFAULT_BACKENDS as DEFAULT_BACKEND_LIST
from saf.deploy.verify.stream import DEFAULT_CHUNK
from saf.deploy.verify.inputs import load_inputs


def _data_args(p, limit_help: str) -> None:
    p.add_argument("--data", default=None, help="dataset (default: the one the network was trained on)")
    p.add_argument("--data-root", default=None, help="directory with MNIST IDX / CIFAR-10 batches")
    p.add_argument("--limit", type=int, default=None, help=limit_help)


DEFAULT_BACKENDS = ",".join(DEFAULT_BACKEND_LIST)   # lava: Lava's stock LIF model (lava-own where it refuses)


def parse_dt_exps(text: str) -> tuple:
    """'A-B' (inclusive) or 'a,b,c' -> the k values of verify's FP dt table (one line on a bad value)."""
    from saf.export.fold.fp import DT_EXP_RANGE

    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-", 1))
            ks = tuple(range(a, b + 1))
        else:
            ks = tuple(int(v) for v in text.split(","))
    except ValueError:
        ks = ()
    lo, hi = DT_EXP_RANGE
    if not ks or any(not lo <= k <= hi for k in ks):
        raise BackendError(f"--dt-exps {text!r}: need A-B or a comma list of integers in {lo}..{hi}")
    return ks


def register(sub) -> None:
    r = sub.add_parser("run", help="run a bundle on a backend: accuracy, spikes, synaptic ops, rates",
                       description="Run an exported bundle on the test set of a dataset.")
    r.add_argument("bundle")
    r.add_argument("--backend", default="emulator", choices=list(BACKENDS))
    _data_args(r, "first N test samples (default: all)")
    r.add_argument("--raster", default=None, metavar="PNG", help="draw a spike raster of one sample: its input events "
                   "(each step's non-zero inputs) above every layer's spikes")
    r.add_argument("--sample", type=int, default=0, help="sample index for --raster")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="prove LIF form == SAF form: certificate + every spike of every layer",
                       description="Re-derive the exactness certificate and compare every layer's spike "
                                   "train at every time step between backends; optional golden regression.")
    v.add_argument("bundle")
    _data_args(v, "first N test samples for the non-Lava backends (default: all)")
    v.add_argument("--inputs", default=None, metavar="NPY",
                   help="compare on these quantized inputs (int array [N, *input_shape], e.g. a saved fuzz "
                        "failure) instead of the dataset")
    v.add_argument("--backends", default=None,
                   help=f"comma list of {', '.join(BACKENDS)}, at least two distinct integer ones "
                        f"(saf-float adds the float-to-quantized change); default {DEFAULT_BACKENDS}, with lava-own "
                        f"for lava where Lava's stock model cannot run the network and less those that "
                        f"cannot (saf-int for FP), said so in the report")
    v.add_argument("--lava-limit", type=int, default=50, help="samples run on Lava (slow) (default 50)")
    v.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="run and compare N samples at a time, keeping only counts, so memory holds one chunk's "
                        f"spike trains (default {DEFAULT_CHUNK}; the report does not depend on it)")
    v.add_argument("--fuzz", type=int, default=0, metavar="N",
                   help="also compare on N inputs beyond the dataset: uniform, sparse, extreme, and inputs "
                        "constructed to hit a threshold tie and a near-24-bit state in every spiking layer")
    v.add_argument("--seed", type=int, default=0, help="seed for --fuzz (default 0)")
    v.add_argument("--allow-untested-ties", action="store_true",
                   help="with --fuzz: exit 0 even when some layer never reached a threshold tie V == TH<<F "
                        "(the summary still says PASS (ties not reached in: ...))")
    v.add_argument("--golden", default=None, metavar="DIR", help="compare against golden outputs in DIR")
    v.add_argument("--update-golden", action="store_true", help="(re)write DIR's golden outputs first")
    v.add_argument("--mismatch-bound", type=float, default=0.01,
                   help="largest spike mismatch rate accepted where the certificate is not exact")
    v.add_argument("--inject-fault", default=None, choices=sorted(FAULTS),
                   help="self-test: add a deliberately faulty emulator that verify must catch")
    v.add_argument("--out", default=None, help="directory for verify.json and summary.txt "
                                               "(default: BUNDLE-verify)")
    v.add_argument("--report", default=None, metavar="MD", help="also write a Markdown report with PNGs")
    v.add_argument("--no-progress", action="store_true")
    v.add_argument("--dt-exps", default="3-11", metavar="A-B",
                   help="FP bundles: the dt table's k range, dt = t_max / 2^k (default 3-11; a measurement)")
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("demo", help="the whole pipeline on the embedded digits: train, export, Lava, verify")
    d.add_argument("--out", default="demo-out")
    d.add_argument("--epochs", type=int, default=8)
    d.add_argument("--lava-limit", type=int, default=50)
    d.add_argument("--force", action="store_true", help="replace the saf demo output in --out, once the new one is complete")
    d.set_defaults(func=cmd_demo)


def cmd_run(a) -> int:
    from saf.deploy.stats import run_stats

    check_count("--limit", a.limit, 1, BackendError)
    check_count("--sample", a.sample, 0, BackendError)
    if a.raster:
        check_file_target(a.raster, "--raster")
    if a.backend in LAVA_BACKENDS:
        require_lava("--backend")
    b = Bundle.load(a.bundle)
    xq, y, name = load_inputs(b, a.data, a.data_root, a.limit)
    from saf.deploy.backends.registry import run_backend

    if a.raster and not (0 <= a.sample < len(xq)):
        raise DatasetError(f"--sample {a.sample} out of range (0..{len(xq) - 1})")
    r = run_backend(a.backend, b, xq, record_spikes=True, progress=not a.json)
    st = run_stats(b.graph, r, xq, y)
    st["backend_description"] = BACKENDS[a.backend].description
    if "models" in r.info:
        st["lava_models"] = r.info["models"]
    from saf.export.energy import activity_estimate
    st["loihi_estimate"] = activity_estimate(b.manifest, st.pop("activity"))
    if a.raster:
        from saf.deploy.plots import plot_raster
        plot_raster(r, b.graph, a.sample, Path(a.raster), xq=xq)
        st["raster"] = a.raster
    if a.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"{r.backend} ({st['backend_description']}) on {name}: {st['samples']} samples, "
          f"accuracy {st['accuracy']:.4f}")
    if b.graph.meta.get("approximate"):
        print("  approximate bundle (exported with --approximate, certificate NOT EXACT): saf verify measures its "
              "agreement with the float model")
    print(f"  spikes per inference {st['spikes_per_inference']:.1f}, synaptic ops per inference "
          f"{st['synops_per_inference']:.0f}, {st['steps_per_s']:.1f} time steps/s "
          f"({st['ms_per_sample']:.2f} ms/sample)")
    for l in st["layers"]:
        print(f"  {l['layer']:<10} firing rate {l['firing_rate']:.4f}  spikes/inference {l['spikes_per_inference']:.1f}")
    if st["loihi_estimate"]:
        from saf.hw_targets.energy import format_estimate
        print(format_estimate(st["loihi_estimate"]))
    else:
        print(f"  energy/latency: no Loihi estimate for target {b.manifest.get('target')} (a Loihi bundle has one)")
    if "lava_models" in st:
        from saf.deploy.lava.model_listing import format_models
        print("  Lava Processes / ProcessModels that ran, per layer:")
        print("\n".join(format_models(st["lava_models"], "    ")))
    if a.raster:
        print(f"  raster of sample {a.sample} written to {a.raster}")
    return 0


def cmd_verify(a) -> int:
    from saf.deploy.verify import format_report
    from saf.deploy.verify.options import VerifyOptions
    from saf.deploy.verify.report_io import check_outputs, write_outputs
    from saf.deploy.verify_run import InputChoice, verify_bundle

    opts = VerifyOptions(lava_limit=a.lava_limit, fault=a.inject_fault, golden_dir=a.golden,
                         update_golden=a.update_golden, mismatch_bound=a.mismatch_bound,
                         progress=not a.no_progress, fuzz=a.fuzz, seed=a.seed, fp_ks=parse_dt_exps(a.dt_exps),
                         allow_untested_ties=a.allow_untested_ties, chunk=a.chunk)
    out = Path(a.out) if a.out else Path(str(Path(a.bundle)).rstrip("/") + "-verify")
    check_outputs(out, a.report)
    rep = verify_bundle(a.bundle, a.backends.split(",") if a.backends is not None else None,
                        InputChoice(a.inputs, a.data, a.data_root, a.limit), opts)
    for n in rep.notes:
        print(f"note: {n}")
    extra = _fuzz_failure(rep.fuzz, a, out) if rep.fuzz is not None else {}
    if rep.fp:
        from saf.deploy.verify.fp_dt import FP_TABLE_PNG, plot_fp_table
        extra[FP_TABLE_PNG] = lambda p: plot_fp_table(rep.fp, p)
    text = format_report(rep)
    print(text)
    write_outputs(rep, text, out, a.report, extra)
    print(f"wrote {out / 'verify.json'}" + (f" and {a.report}" if a.report else ""))
    return 0 if rep.ok else 1


def _fuzz_failure(fz: dict, a, out: Path) -> dict:
    """The first failing fuzz input as an extra file of the verify output ({name: writer}), and a
    command line that reproduces it recorded in the report."""
    x = fz.pop("failing_input", None)
    if x is None:
        return {}
    path = out / FUZZ_FAILURE

    def save(target: Path) -> None:
        with open(target, "wb") as f:
            np.save(f, x)
    pair = [fz["failing"]["a"], fz["failing"]["b"]]
    fault_name = f"emulator[{a.inject_fault}]" if a.inject_fault else None
    names = [n if n != fault_name else "emulator" for n in pair]
    for extra in ("saf-int", "emulator"):
        if len(set(names)) < 2:
            names.append(extra)
    names = list(dict.fromkeys(names))
    repro = Path(str(out).rstrip("/") + "-fuzz-repro")
    cmd = f"saf verify {a.bundle} --backends {','.join(names)} --inputs {path} --out {repro}"
    if a.inject_fault:
        cmd += f" --inject-fault {a.inject_fault}"
    fz["failing_file"], fz["reproduce"] = str(path), cmd
    return {FUZZ_FAILURE: save}


def cmd_demo(a) -> int:
    check_count("--lava-limit", a.lava_limit, 1, BackendError)
    check_count("--epochs", a.epochs, 1, BackendError)
    from saf.deploy.cli.demo import run_demo
    return run_demo(Path(a.out), epochs=a.epochs, lava_limit=a.lava_limit, force=a.force)
