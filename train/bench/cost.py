"""Training-cost benchmark (SAF paper Fig. 3 / Fig. 5, Tables 1-2): time per minibatch and memory
against the number of time steps T, per training method, on synthetic data of the model's input shape.

Pure measurement: `bench_train(...)` returns a JSON-able dict; printing is `format_bench_train`.

Time: median wall time of one minibatch (forward + backward + optimizer, as `train_batch` runs it)
after warm-up, with torch.cuda.synchronize around it on CUDA. Methods are interleaved within each
round (the order rotates) so a load change on a shared machine hits every method alike; the
process CPU time is recorded beside the wall time.

Memory, measured on one extra minibatch per (method, T):
  memory_bytes    CUDA: torch.cuda.max_memory_allocated (peak reset per config). CPU: the peak of
                  the CPU allocator (torch profiler memory events) plus the bytes live before the
                  minibatch (parameters, optimizer state, the batch) - the same quantity.
  saved_bytes     peak bytes autograd saves for backward in one graph (SavedTensorMeter); exact and
                  deterministic: one step's graph for SAF/OTTT, the whole sequence for BPTT.
  state_bytes     bytes carried from one step to the next (SAF: a per layer; LIF: u, s, a_hat).
  rss_peak_bytes  CPU only, the process's peak resident set during that minibatch (VmHWM after a
                  reset through /proc/self/clear_refs); includes everything else in the process.
"""
from __future__ import annotations

import platform
import statistics
import time
from typing import Optional, Sequence

import torch

from saf.train.functional.loss import ce_mse_loss
from saf.train.methods.registry import METHODS, train_batch
from saf.train.modules.network import SpikingNet
from saf.train.spec import BUILTIN, SpecError, load_spec, with_neuron
from saf.train.bench.measure import BenchStep, device_name, time_round, measure_memory
from saf.train.bench.compiled import compile_experiment, want_compile
from saf.train.bench.ratios import compute_checks, compute_ratios
from saf.train.bench.profile import PROFILE_METHODS, format_profile, profile_train
from saf.core.counts import check_count
from saf.core.errors import SafError


class BenchError(SafError, ValueError):
    """Bad benchmark input (unknown method/model, bad T list, bad device); one clear line."""


# SAF paper, CIFAR-10 VGG, batch 128, T = 6, one NVIDIA A10 (Tables 1 and 2; Figs. 3 and 5).
PAPER = {
    "setup": "SAF paper Tables 1-2: CIFAR-10 VGG, batch 128, T=6, one NVIDIA A10",
    "absolute": {"ottt-o": {"time_s": 0.351, "memory_gb": 1.330}, "saf-e": {"time_s": 0.246, "memory_gb": 0.921},
                 "ottt-a": {"time_s": 0.348, "memory_gb": 1.330}, "saf-f": {"time_s": 0.127, "memory_gb": 0.893}},
    "ratios": {"saf-e/ottt-o": {"time": round(0.246 / 0.351, 2), "memory": round(0.921 / 1.330, 2)},
               "saf-f/ottt-a": {"time": round(0.127 / 0.348, 2), "memory": round(0.893 / 1.330, 2)}},
}

# What the measured code does for speed (all bit-identical to the plain formulas; tests/test_forms.py,
# tests/test_gradients.py pin SAF == LIF and Theorem 1).
IMPLEMENTATION = [
    "SAF neuron step as one autograd node (train.functional.neuron.saf_step_fused): in-place, 2 buffers "
    "instead of 7, saves only the surrogate input; one state tensor a per neuron (OTTT: u, s, a_hat)",
    "sigmoid surrogate backward in place (2 buffers instead of 6), shared by every method",
    "SAF-F: the T-1 graph-free steps reuse one sWS weight computation and skip the readout",
    "SAF: one convolution per layer and step (OTTT: two, on spikes for the value and on traces for the "
    "gradient); no Python loop over neurons",
]


FULL = {"model": "vgg11-cifar", "batch": 128, "Ts": (2, 4, 6, 8, 16), "steps": 5, "warmup": 2}
# --small: the real VGG-11 (so the T=6 claims are measured on the paper's network), a small batch
# and T up to 6; about 2-4 minutes on 2 CPU cores.
SMALL = {"model": "vgg11-cifar", "batch": 8, "Ts": (2, 4, 6), "steps": 3, "warmup": 1}


# ------------------------------------------------------------------ input parsing (user errors)
def parse_Ts(text) -> tuple:
    """'2,4,6' -> (2, 4, 6); sorted, unique, each >= 1."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [p.strip() for p in str(text).split(",") if p.strip()]
    if not items:
        raise BenchError(f"--T: expected a comma-separated list of time steps like 2,4,6, got {text!r}")
    out = []
    for p in items:
        try:
            v = int(p)
        except (TypeError, ValueError):
            raise BenchError(f"--T: {p!r} is not an integer (expected e.g. 2,4,6)") from None
        if v < 1 or v > 1024:
            raise BenchError(f"--T: time steps must be in 1..1024, got {v}")
        out.append(v)
    return tuple(sorted(set(out)))


def parse_methods(text) -> tuple:
    items = list(text) if isinstance(text, (list, tuple)) else [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if not items:
        raise BenchError(f"--methods: expected a comma-separated list from {', '.join(METHODS)}")
    for m in items:
        if m not in METHODS:
            raise BenchError(f"--methods: unknown method {m!r} (known: {', '.join(METHODS)})")
    return tuple(dict.fromkeys(items))


def resolve_device(name: str) -> str:
    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        return name
    if name != "cpu":
        raise BenchError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return name


def _spec(model: str, lam: float, theta: float) -> dict:
    try:
        return with_neuron(load_spec(model), lam, theta)
    except SpecError as e:
        raise BenchError(str(e)) from None




# ------------------------------------------------------------------ the benchmark
def _setup(spec: dict, batch: int, seed: int, device: str):
    """The network (seeded) and one synthetic minibatch of the model's input shape."""
    torch.manual_seed(seed)
    net = SpikingNet(spec).to(device)
    net.train()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *spec["input_shape"]), generator=g).to(device)
    y = torch.randint(0, int(spec["num_classes"]), (batch,), generator=g).to(device)
    return net, x, y


def _env(device: str, net) -> dict:
    return {"device": device, "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "parameters": sum(p.numel() for p in net.parameters())}


def bench_train_profile(model: Optional[str] = None, batch: Optional[int] = None, T: int = 6,
                        methods: Sequence[str] = PROFILE_METHODS, device: str = "auto", steps: Optional[int] = None,
                        warmup: Optional[int] = None, small: bool = False, *, lam: float = 0.5,
                        theta: Optional[float] = None, seed: int = 0, lr: float = 1e-3, ops: bool = True,
                        log=None) -> dict:
    """`saf bench train --profile`: train/bench/profile.py's per-phase table for one T (default 6)."""
    preset = SMALL if small else FULL
    model = model or preset["model"]
    batch = int(batch if batch is not None else preset["batch"])
    steps = int(steps if steps is not None else preset["steps"])
    warmup = int(warmup if warmup is not None else preset["warmup"])
    if batch < 1 or steps < 1 or warmup < 0 or T < 1:
        raise BenchError(f"need --batch >= 1, --steps >= 1, --warmup >= 0 and T >= 1, got {batch}, {steps}, {warmup}, {T}")
    methods = parse_methods(methods)
    device = resolve_device(device)
    net, x, y = _setup(_spec(model, lam, theta), batch, seed, device)
    t0 = time.perf_counter()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    r = profile_train(BenchStep(net, (x, y), T, opt, ce_mse_loss, device), methods, steps, warmup, ops=ops, log=log)
    r["config"] = {"model": model, "batch": batch, "T": T, "methods": list(methods), "steps": steps,
                   "warmup": warmup, "lam": lam, "seed": seed, "optimizer": f"SGD(lr={lr}, momentum=0.9)"}
    r["env"] = _env(device, net)
    r["wall_s"] = round(time.perf_counter() - t0, 2)
    return r


def format_bench_train_profile(r: dict) -> str:
    c, env = r["config"], r["env"]
    head = (f"saf bench train --profile: {c['model']} ({env['parameters']:,} parameters), batch {c['batch']}, "
            f"T {c['T']}, {env['device']} ({env['device_name']}, {env['threads']} threads), torch {env['torch']}")
    return head + "\n" + format_profile(r) + f"\n\nbenchmark wall time {r['wall_s']:.1f} s"


def bench_train(model: Optional[str] = None, batch: Optional[int] = None, Ts: Optional[Sequence[int]] = None,
                methods: Sequence[str] = METHODS, device: str = "auto", steps: Optional[int] = None,
                warmup: Optional[int] = None, small: bool = False, *, compile: str = "off",
                lam: float = 0.5, theta: Optional[float] = None, seed: int = 0, lr: float = 1e-3, log=None) -> dict:
    """Time and memory per (method, T). Arguments left None take the FULL preset (SMALL with small=True).
    compile: "off", "on" or "auto" (torch.compile experiment on the neuron steps; the table itself is
    always eager, the compiled effect is reported beside it)."""
    preset = SMALL if small else FULL
    model = model or preset["model"]
    batch = int(batch if batch is not None else preset["batch"])
    Ts = parse_Ts(Ts if Ts is not None else preset["Ts"])
    methods = parse_methods(methods)
    steps = int(steps if steps is not None else preset["steps"])
    warmup = int(warmup if warmup is not None else preset["warmup"])
    check_count("--batch", batch, 1, BenchError)
    if steps < 1 or warmup < 0:
        raise BenchError(f"need --steps >= 1 and --warmup >= 0, got {steps} and {warmup}")
    if compile not in ("off", "on", "auto"):
        raise BenchError(f"--compile must be off, on or auto, got {compile!r}")
    device = resolve_device(device)
    spec = _spec(model, lam, theta)

    net, x, y = _setup(spec, batch, seed, device)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = ce_mse_loss

    t_start = time.perf_counter()
    results = []
    for T in Ts:
        times = {m: [] for m in methods}
        cpu_times = {m: [] for m in methods}
        for m in methods:
            for _ in range(warmup):
                train_batch(net, x, y, T, m, opt, loss_fn)
        for r in range(steps):
            time_round(BenchStep(net, (x, y), T, opt, loss_fn, device), methods, times, cpu_times, r)
        for m in methods:
            mem = measure_memory(net, x, y, T, m, opt, loss_fn, device)
            row = {"method": m, "T": T, "time_s": statistics.median(times[m]), "times_s": times[m],
                   "cpu_time_s": statistics.median(cpu_times[m])}
            row.update(mem)
            results.append(row)
            if log:
                log(f"  {m:7s} T={T:<3d} {row['time_s'] * 1e3:9.1f} ms  {_mb(row['memory_bytes'])}")

    compile_rec = {"tried": False, "mode": compile}
    if want_compile(compile, device):
        Tc = 6 if 6 in Ts else Ts[len(Ts) // 2]
        if log:
            log(f"torch.compile experiment at T={Tc} ...")
        cm = [m for m in methods if m != "bptt"] if small else list(methods)   # --small: the paper's four
        compile_rec = compile_experiment(BenchStep(net, (x, y), Tc, opt, loss_fn, device), cm or list(methods),
                                         steps, log)
        compile_rec["mode"] = compile

    out = {
        "kind": "saf-bench-train",
        "config": {"model": model, "batch": batch, "Ts": list(Ts), "methods": list(methods), "steps": steps,
                   "warmup": warmup, "small": bool(small), "lam": lam, "theta": theta, "seed": seed,
                   "optimizer": f"SGD(lr={lr}, momentum=0.9)", "input_shape": list(spec["input_shape"])},
        "env": _env(device, net),
        "results": results,
        "compile": compile_rec,
        "implementation": IMPLEMENTATION,
        "paper": PAPER,
        "wall_s": round(time.perf_counter() - t_start, 2),
    }
    out["ratios"] = compute_ratios(results)
    out["checks"] = compute_checks(results)
    return out


# ------------------------------------------------------------------ report
def format_bench_train(r: dict) -> str:
    """The printed table (train/bench/report.py holds the report code: this table and the figure)."""
    from saf.train.bench.report import format_bench_train as fmt
    return fmt(r)


def _mb(n) -> str:
    return "      -" if n is None else f"{n / 2 ** 20:7.1f} MB"


def known_models() -> str:
    return ", ".join(BUILTIN)
