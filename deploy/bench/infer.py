"""`saf bench infer`: every backend on the same inputs in one run; two figures per backend: samples/s,
and the multiply-adds it actually executed per second as a fraction of this machine's float32 matmul
peak (`peak_fraction`: counted by the backend where it skips work, the event-driven emulator skipping
silent inputs, else its declared work model, BackendSpec.work; the peak is the best of every installed
library, numpy and torch, measured in the same run; peak.py). The dense-equivalent figure stays, named
as such (`dense_peak_fraction`: every synapse at every step, whatever the backend did)."""
from __future__ import annotations

import time

import numpy as np

DEFAULT_BACKENDS = ("emulator", "onnx", "onnx-cuda", "saf-int", "lif-float", "lava")


def bench_infer(bundle_path, data=None, limit=None, backends=DEFAULT_BACKENDS, lava_limit=50,
                repeats: int = 3, data_root=None, peak_seconds: float = 1.0) -> dict:
    """Median of `repeats` runs per backend after one untimed warm-up run (Lava: one run, it is slow)
    on the test inputs; every
    backend's predictions must agree with the emulator's on the samples it ran (else flagged)."""
    from saf.deploy.backends.registry import Bundle, get_backend, run_spec
    from saf.deploy.backends.work import dense_equivalent_macs
    from saf.deploy.bench.peak import PEAK_FRACTION_GOAL, matmul_peak_gflops, peak_fraction
    from saf.deploy.verify.inputs import load_inputs

    b = Bundle.load(bundle_path)
    xq, y, name = load_inputs(b, data, data_root, limit)
    T = b.graph.T
    macs = dense_equivalent_macs(b.graph)
    peak = matmul_peak_gflops(seconds=peak_seconds)
    rows, ref = [], None
    for be in backends:
        spec = get_backend(be)
        why = spec.unavailable() or spec.refuses(b.graph)   # e.g. lava on a network the stock model refuses
        if why:
            rows.append({"backend": be, "available": False, "note": why})
            continue
        x = xq[:lava_limit] if spec.subset else xq
        times, r, compile_s = [], None, 0.0
        if not spec.subset:       # one untimed warm-up run: caches, compiled kernels, idle thread pools
            run_spec(spec, b, x, record_spikes=False)
        for _ in range(1 if spec.subset else repeats):
            t0 = time.perf_counter()
            r = run_spec(spec, b, x, record_spikes=False)
            times.append(time.perf_counter() - t0)
        sec = float(np.median(times))
        if be == "lava":          # steady-state streaming rate: build + compile reported separately
            compile_s = r.info.get("build_compile_s", 0.0)
            sec = r.info["ms_per_sample"] * len(x) / 1000.0
        if ref is None and be == "emulator":
            ref = r.predictions
        agree = None if ref is None else float((r.predictions == ref[:len(x)]).mean())
        executed, source = _executed_macs(spec, b.graph, r, len(x))
        rows.append({"backend": be, "available": True, "samples": int(len(x)), "seconds": sec,
                     "samples_per_s": len(x) / sec, "ms_per_sample": 1000 * sec / len(x),
                     "us_per_time_step": 1e6 * sec / (len(x) * T), "agree_with_emulator": agree,
                     "covered": spec.covered, "macs_per_sample": executed, "macs_counted_by": source,
                     "note": "; ".join(n for n in (f"excludes {compile_s:.1f} s build+compile" if be == "lava" else
                                                   "includes Lava's build and compile (an upper bound)" if be == "netx"
                                                   else "",
                                                   "" if spec.covered else "not covered by the certificate") if n)})
    lava = next((r for r in rows if r["backend"] == "lava" and r.get("available")), None)
    peak2 = matmul_peak_gflops(seconds=peak_seconds)        # again after the backends: a shared CPU shows here
    for r in rows:
        if lava and r.get("available"):
            r["speedup_vs_lava"] = r["samples_per_s"] / lava["samples_per_s"]
        if r.get("available"):
            r["dense_gflops"] = r["samples_per_s"] * 2.0 * macs / 1e9
            r["dense_peak_fraction"] = peak_fraction(r["samples_per_s"], macs, peak["gflops"])
            m = r["macs_per_sample"]
            r["gmacs_per_s"] = None if m is None else r["samples_per_s"] * m / 1e9
            r["peak_fraction"] = None if m is None else peak_fraction(r["samples_per_s"], m, peak["gflops"])
            if r["backend"] in ("emulator", "onnx") and r["peak_fraction"] is not None:
                r["meets_peak_goal"] = r["peak_fraction"] >= PEAK_FRACTION_GOAL
    return {"bundle": str(bundle_path), "dataset": name, "T": T, "rows": rows,
            "dense_macs_per_sample": macs, "matmul_peak": peak, "matmul_peak_after": peak2,
            "peak_fraction_goal": PEAK_FRACTION_GOAL}


def _executed_macs(spec, graph, r, n: int) -> tuple:
    """(multiply-adds per sample the backend executed, who says so) or (None, why unknown)."""
    if r.info.get("macs_executed") is not None:
        return r.info["macs_executed"] / max(1, n), "counted by the backend"
    if spec.work is not None:
        return float(spec.work(graph)), "the backend's work model"
    return None, "not counted"


def format_bench_infer(res: dict) -> str:
    pk, pk2 = res["matmul_peak"], res["matmul_peak_after"]
    libs = ", ".join(f"{k} {v:.1f}" for k, v in pk.get("by_library", {}).items())
    lines = [f"saf bench infer: {res['bundle']} on {res['dataset']} (T={res['T']})",
             f"float32 matmul peak of this machine: {pk['gflops']:.1f} GFLOP/s ({pk.get('library', 'numpy')}; "
             f"{libs}; {pk['n']}x{pk['n']}, best of {pk['reps']}; {pk2['gflops']:.1f} after the backends: a large "
             f"difference means a busy CPU)",
             f"dense-equivalent work: {res['dense_macs_per_sample'] / 1e6:.2f} M multiply-adds per sample; "
             f"goal for emulator and onnx: >= {res['peak_fraction_goal']:.0%} of peak in executed work",
             f"{'backend':<10} {'samples':>7} {'samples/s':>11} {'ms/sample':>10} {'us/step':>9} "
             f"{'M MAC/smp':>10} {'of peak':>8} {'dense of peak':>14} {'x Lava':>9}"]
    for r in res["rows"]:
        if not r.get("available"):
            lines.append(f"{r['backend']:<10} not available: {r['note']}")
            continue
        sp = r.get("speedup_vs_lava")
        m, pf = r["macs_per_sample"], r["peak_fraction"]
        note = "; ".join(n for n in (r.get("note"), "" if m is not None else "executed work not counted") if n)
        lines.append(f"{r['backend']:<10} {r['samples']:>7} {r['samples_per_s']:>11.1f} {r['ms_per_sample']:>10.3f} "
                     f"{r['us_per_time_step']:>9.2f} {(f'{m / 1e6:.3f}' if m is not None else '-'):>10} "
                     f"{(f'{pf:.1%}' if pf is not None else '-'):>8} {r['dense_peak_fraction']:>14.1%} "
                     f"{(f'{sp:.0f}x' if sp else '-'):>9}"
                     + ({True: "  meets goal", False: "  below goal"}[r["meets_peak_goal"]] if "meets_peak_goal" in r else "")
                     + (f"  ({note})" if note else ""))
    lines.append("of peak: the multiply-adds the backend executed (M MAC/smp: counted by the event-driven emulator, "
                 "which skips silent inputs; ONNX's from its model) x 2 FLOP x samples/s / peak; dense of peak: "
                 "every synapse at every step, whatever the backend did")
    return "\n".join(lines)
