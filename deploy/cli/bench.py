"""`saf bench train` (training cost vs T per method, the SAF paper's Fig. 3 / Tables 1-2) and
`saf bench infer` (every inference backend on one bundle)."""
from __future__ import annotations

import json
from pathlib import Path

from saf.train.bench.cost import SMALL, BenchError, FULL
from saf.train.methods.registry import METHODS
from saf.core.counts import check_count
from saf.core.outdir import check_file_target


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: training time/memory vs T (train), inference backends (infer)",
                       description="Benchmarks. `saf bench train` measures time per minibatch and memory against "
                                   "the number of time steps for each training method; `saf bench infer` runs "
                                   "every inference backend on one exported bundle.")
    bsub = p.add_subparsers(dest="bench_command", metavar="{train,infer,readme}")
    p.set_defaults(func=lambda a: _help(p))

    t = bsub.add_parser("train", help="time and memory per minibatch vs T for SAF-E/SAF-F/OTTT/BPTT",
                        description="Synthetic data of the model's input shape; median time per minibatch "
                                    "(forward + backward + optimizer) after warm-up and peak memory per method and "
                                    "T, the SAF/OTTT ratios beside the paper's. Defaults: "
                                    f"{_preset(FULL)}; with --small: {_preset(SMALL)} (minutes on 2 CPU cores).")
    t.add_argument("--model", default=None, help="builtin model or JSON spec (default vgg11-cifar)")
    t.add_argument("--batch", type=int, default=None, help="minibatch size (default 128; --small 8)")
    t.add_argument("--T", default=None, help="comma-separated time steps (default 2,4,6,8,16; --small 2,4,6)")
    t.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}")
    t.add_argument("--small", action="store_true", help="a quick run: small batch, T up to 6, fewer repeats")
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    t.add_argument("--steps", type=int, default=None, help="timed minibatches per (method, T) (default 5; --small 3)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up minibatches per (method, T) (default 2; --small 1)")
    t.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                   help="also time torch.compile'd neuron steps beside the eager table (auto: when a compiler is there)")
    t.add_argument("--lam", type=float, default=0.5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="write the full result as JSON here")
    t.add_argument("--plot", default=None, help="write a PNG like the paper's Fig. 3 here (time and memory vs T)")
    t.add_argument("--quiet", action="store_true", help="no per-configuration progress lines")
    t.add_argument("--profile", action="store_true",
                   help="instead of the T sweep: per-phase time (sWS, synapse, neuron, loss, backward, optimizer) and "
                        "saved-tensor bytes per phase and layer for each method at one T (--T, default 6)")
    t.add_argument("--no-ops", action="store_true", help="with --profile: skip the torch.profiler op table")
    t.add_argument("--sws", default="save", choices=("save", "recompute"),
                   help="weight standardization's intermediates: saved (default, plain autograd) or recomputed in "
                        "backward (less memory, more time, SAF and OTTT alike); gradients are bit-identical either way")
    t.set_defaults(func=cmd_bench_train)

    i = bsub.add_parser("infer", help="every inference backend on one bundle: samples/s, time per step",
                        description="Run the bundle on each backend with the same inputs; speed and agreement.")
    i.add_argument("bundle", help="exported bundle directory")
    i.add_argument("--data", "--dataset", dest="data", default=None, help="dataset (default: the bundle's)")
    i.add_argument("--data-root", default=None)
    i.add_argument("--limit", type=int, default=None, help="first N test samples")
    i.add_argument("--backends", default=None, help="comma-separated backends (default: all)")
    i.add_argument("--lava-limit", type=int, default=50, help="at most this many samples on Lava (slow)")
    i.add_argument("--repeats", type=int, default=3)
    i.add_argument("--out", default=None, help="write the result as JSON here")
    i.add_argument("--peers", action="store_true",
                   help="instead: the emulator against the float simulators (onnx, the trained network's LIF form in "
                        "torch, snnTorch when installed), same inputs, T and threads, samples/s side by side")
    i.add_argument("--threads", type=int, default=2, help="with --peers: torch and numba threads (default 2)")
    i.set_defaults(func=cmd_bench_infer)

    r = bsub.add_parser("readme", help="re-run the README's fast headline numbers and diff them against their record",
                        description="Run the commands behind each recorded README number (docs/readme_numbers.json: "
                                    "command, JSON key, value, tolerance) and print recorded vs measured; exit 1 when "
                                    "one differs beyond its tolerance.")
    r.add_argument("--table", default=None, help="the record (default docs/readme_numbers.json)")
    r.add_argument("--only", default=None, help="comma-separated claim names to run (slow ones included)")
    r.add_argument("--all", action="store_true", help="also the claims marked slow")
    r.add_argument("--json", action="store_true", help="print the rows as JSON")
    r.set_defaults(func=cmd_bench_readme)


def _preset(p: dict) -> str:
    return (f"{p['model']}, batch {p['batch']}, T {','.join(map(str, p['Ts']))}, {p['steps']} timed after "
            f"{p['warmup']} warm-up")


def _help(p) -> int:
    p.print_help()
    return 2


def _write_json(path: str, obj) -> None:
    out = Path(path)
    if out.parent and not out.parent.exists():
        raise BenchError(f"--out {path}: directory {out.parent} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(out)


def cmd_bench_train(a) -> int:
    from saf.train.bench.cost import bench_train, format_bench_train, parse_methods, parse_Ts

    Ts = parse_Ts(a.T) if a.T is not None else None          # bad input fails before any work
    methods = parse_methods(a.methods)
    for flag, path in (("--plot", a.plot), ("--out", a.out)):
        if path and not Path(path).resolve().parent.exists():
            raise BenchError(f"{flag} {path}: directory {Path(path).resolve().parent} does not exist")
        if path:
            check_file_target(path, flag)
    log = None if a.quiet else (lambda s: print(s, flush=True))
    import saf.train.functional.ws as ws
    keep, ws.RECOMPUTE = ws.RECOMPUTE, a.sws == "recompute"
    try:
        if a.profile:
            return _bench_train_profile(a, Ts, log)
        r = bench_train(a.model, a.batch, Ts, methods, a.device, a.steps, a.warmup, a.small,
                        compile=a.compile, lam=a.lam, seed=a.seed, log=log)
    finally:
        ws.RECOMPUTE = keep
    r["config"]["sws"] = a.sws
    print(format_bench_train(r))
    if a.out:
        _write_json(a.out, r)
        print(f"wrote {a.out}")
    if a.plot:
        from saf.train.bench.report import plot_bench_train
        plot_bench_train(r, a.plot)
        print(f"wrote {a.plot}")
    return 0


def _bench_train_profile(a, Ts, log) -> int:
    from saf.train.bench.cost import bench_train_profile, format_bench_train_profile
    from saf.train.bench.profile import PROFILE_METHODS

    if Ts is not None and len(Ts) != 1:
        raise BenchError(f"--T with --profile: one time step count, got {','.join(map(str, Ts))}")
    if a.plot:
        raise BenchError("--plot: not with --profile (the profile is a table; --out writes its JSON)")
    methods = a.methods if a.methods != ",".join(METHODS) else PROFILE_METHODS
    r = bench_train_profile(a.model, a.batch, Ts[0] if Ts else 6, methods, a.device, a.steps, a.warmup,
                            a.small, lam=a.lam, seed=a.seed, ops=not a.no_ops, log=log)
    r["config"]["sws"] = a.sws
    print(format_bench_train_profile(r))
    if a.out:
        _write_json(a.out, r)
        print(f"wrote {a.out}")
    return 0


def cmd_bench_infer(a) -> int:
    from saf.deploy.bench.infer import bench_infer, format_bench_infer

    check_count("--limit", a.limit, 1, BenchError)
    check_count("--repeats", a.repeats, 1, BenchError)
    check_count("--lava-limit", a.lava_limit, 1, BenchError)
    if a.out:
        check_file_target(a.out, "--out")
    if a.peers:
        return _bench_peers(a)
    kw = {}
    if a.backends is not None:
        backends = tuple(b.strip() for b in a.backends.split(",") if b.strip())
        from saf.deploy.backends.registry import BACKENDS
        known = tuple(BACKENDS)                     # any registered backend (netx included), not only the defaults
        unknown = [b for b in backends if known and b not in known]
        if unknown or not backends:
            raise BenchError(f"--backends: unknown {', '.join(unknown) or '(empty list)'}"
                             + (f" (known: {', '.join(known)})" if known else ""))
        kw["backends"] = backends
    r = bench_infer(a.bundle, data=a.data, limit=a.limit, lava_limit=a.lava_limit, repeats=a.repeats,
                    data_root=a.data_root, **kw)
    print(format_bench_infer(r))
    if a.out:
        _write_json(a.out, r)
        print(f"wrote {a.out}")
    return 0


def _bench_peers(a) -> int:
    from saf.deploy.bench.peers import bench_peers, format_peers

    check_count("--threads", a.threads, 1, BenchError)
    if a.backends is not None:
        raise BenchError("--backends: not with --peers (the peers are emulator, onnx, torch-lif, snntorch)")
    r = bench_peers(a.bundle, data=a.data, limit=a.limit, repeats=a.repeats, data_root=a.data_root, threads=a.threads)
    print(format_peers(r))
    if a.out:
        _write_json(a.out, r)
        print(f"wrote {a.out}")
    return 0


def cmd_bench_readme(a) -> int:
    import sys

    from saf.deploy.bench.readme import TABLE, bench_readme, format_readme_rows

    only = [n.strip() for n in a.only.split(",") if n.strip()] if a.only is not None else None
    if only is not None and not only:
        raise BenchError("--only: empty list of claim names")
    rows = bench_readme(_run_saf, a.table or TABLE, only=only, include_slow=a.all,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(rows, indent=2, default=str) if a.json else format_readme_rows(rows))
    return 0 if all(r["ok"] for r in rows) else 1


def _run_saf(argv: tuple) -> tuple:
    """(exit code, stdout) of one saf command run in this process (what `saf bench readme` re-runs)."""
    import contextlib
    import io

    from saf.deploy.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()
