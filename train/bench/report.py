"""The `saf bench train` report: the printed table with the paper's ratios beside this run's, and
the figure laid out like the SAF paper's Fig. 3 (A: training time per minibatch vs T, B: memory
vs T), with a third panel for the exact activation bytes."""
from __future__ import annotations

from pathlib import Path

STYLE = {"saf-e": ("SAF-E", "tab:red", "o", "-"), "saf-f": ("SAF-F", "tab:orange", "s", "-"),
         "ottt-o": ("OTTT$_O$", "tab:blue", "o", "--"), "ottt-a": ("OTTT$_A$", "tab:cyan", "s", "--"),
         "bptt": ("BPTT", "tab:gray", "^", ":"), "ide": ("IDE", "tab:green", "D", "-.")}


def _mb(n) -> str:
    return "      -" if n is None else f"{n / 2 ** 20:7.1f} MB"


def format_bench_train(r: dict) -> str:
    c, env = r["config"], r["env"]
    lines = [f"saf bench train: {c['model']} ({env['parameters']:,} parameters), batch {c['batch']}, "
             f"{env['device']} ({env['device_name']}, {env['threads']} threads), torch {env['torch']}",
             f"median of {c['steps']} minibatches after {c['warmup']} warm-up; memory = "
             f"{r['results'][0]['memory_source'] if r['results'] else '-'}", ""]
    hdr = f"{'method':8s} {'T':>3s} {'time ms':>9s} {'cpu ms':>9s} {'memory':>10s} {'saved':>10s} {'state':>9s} {'GFLOP':>8s}"
    lines += [hdr, "-" * len(hdr)]
    for row in sorted(r["results"], key=lambda q: (c["methods"].index(q["method"]), q["T"])):
        fl = "-" if row.get("flops") is None else f"{row['flops'] / 1e9:8.2f}"
        lines.append(f"{row['method']:8s} {row['T']:3d} {row['time_s'] * 1e3:9.1f} {row['cpu_time_s'] * 1e3:9.1f} "
                     f"{_mb(row['memory_bytes']):>10s} {_mb(row['saved_bytes']):>10s} "
                     f"{row['state_bytes'] / 2 ** 20:6.1f} MB {fl:>8s}")
    lines += ["", "ratios (this run; paper: CIFAR-10 VGG, batch 128, T=6, A10)"]
    hdr = f"{'pair':14s} {'T':>3s} {'time':>6s} {'cpu':>6s} {'memory':>7s} {'activ.':>7s} {'saved':>6s}   paper"
    lines += [hdr, "-" * len(hdr)]

    def f(v):
        return "     -" if v is None else f"{v:6.2f}"
    for T, per in r["ratios"].items():
        for pair, q in per.items():
            p = r.get("paper", {}).get("ratios", {}).get(pair)
            paper = "" if p is None or T != "6" else f"time {p['time']:.2f}  memory {p['memory']:.2f}"
            if p is not None and T != "6":
                paper = "(paper: T=6 only)"
            lines.append(f"{pair:14s} {T:>3s} {f(q['time'])} {f(q['cpu_time'])} {f(q['memory']):>7s} "
                         f"{f(q['activation']):>7s} {f(q['saved'])}   {paper}")
    comp = r.get("compile") or {}
    lines.append("")
    if comp.get("ok"):
        lines.append(f"torch.compile of the neuron steps (T={comp['T']}, compile {comp.get('compile_s')} s, "
                     f"bit-exact SAF step: {comp.get('bit_exact_saf_step')}); eager -> compiled:")
        cpu = comp.get("speedup_cpu_time", {})
        for m in comp["speedup"]:
            extra = f", cpu time x{cpu[m]:.2f}" if m in cpu else ""
            lines.append(f"  {m:7s} {comp['eager_s'][m] * 1e3:8.1f} -> {comp['compiled_s'][m] * 1e3:8.1f} ms "
                         f"(x{comp['speedup'][m]:.2f}{extra})")
    elif comp.get("tried"):
        lines.append(f"torch.compile of the neuron steps: failed, eager used ({comp.get('error')})")
    else:
        lines.append(f"torch.compile of the neuron steps: not tried (--compile {comp.get('mode', 'off')})")
    lines += ["", "checks:"]
    for k, v in r["checks"].items():
        lines.append(f"  [{'ok' if v else ('--' if v is None else 'FAIL')}] {k}")
    lines.append(f"\nbenchmark wall time {r['wall_s']:.1f} s")
    return "\n".join(lines)


def _series(results: list, method: str, key: str, scale: float = 1.0):
    rows = sorted((r for r in results if r["method"] == method and r.get(key) is not None), key=lambda r: r["T"])
    return [r["T"] for r in rows], [r[key] * scale for r in rows]


def plot_bench_train(r: dict, path) -> Path:
    """Write the figure for a `bench_train` result to `path` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, env = r["config"], r["env"]
    cuda = env["device"].startswith("cuda")
    big = max([q.get("memory_bytes") or 0 for q in r["results"]] + [0]) >= 2 ** 30
    unit, scale = ("GiB", 1 / 2 ** 30) if big else ("MiB", 1 / 2 ** 20)
    panels = [("(A) training time per minibatch", "time_s", 1.0, "time [s]"),
              ("(B) peak memory" + (" (max_memory_allocated)" if cuda else " (CPU allocator)"),
               "memory_bytes", scale, f"memory [{unit}]"),
              ("(C) activations kept: autograd-saved + state", "activation_bytes", scale, f"memory [{unit}]")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, (title, key, scale, ylabel) in zip(axes, panels):
        for m in c["methods"]:
            T, v = _series(r["results"], m, key, scale)
            if not T:
                continue
            label, color, marker, ls = STYLE.get(m, (m, None, "o", "-"))
            ax.plot(T, v, marker=marker, linestyle=ls, color=color, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time steps T")
        ax.set_ylabel(ylabel)
        ax.set_xticks(c["Ts"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    ratios = r.get("ratios", {}).get("6") or {}
    note = ""
    if ratios:
        parts = []
        for pair, key in (("saf-e/ottt-o", "time"), ("saf-e/ottt-o", "memory"), ("saf-f/ottt-a", "time")):
            q = ratios.get(pair, {}).get(key)
            paper = r.get("paper", {}).get("ratios", {}).get(pair, {}).get(key)
            if q is not None:
                parts.append(f"{pair} {key} {q:.2f} (paper {paper:.2f})" if paper else f"{pair} {key} {q:.2f}")
        note = "   T=6: " + ", ".join(parts)
    fig.suptitle(f"{c['model']}, batch {c['batch']}, {env['device_name']} ({env['device']}){note}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
