"""The optional torch.compile experiment of `saf bench train --compile`: the fused SAF neuron step
measured against the eager one on the same batches (used only when it helps; CPU compile is optional)."""
from __future__ import annotations

import contextlib
import functools
import statistics
import time

import torch

from saf.train.methods.registry import train_batch
from saf.train.bench.measure import BenchStep, sync, time_round


# ------------------------------------------------------------------ torch.compile experiment
def _saf_reference(U, a_prev, lam, theta, surrogate, surrogate_slope):
    """The SAF neuron step written as plain tensor ops (what torch.compile gets to fuse)."""
    from saf.train.functional.neuron import saf_step
    from saf.train.functional.surrogate import spike
    return saf_step(U, a_prev, lam, theta, functools.partial(spike, surrogate=surrogate, slope=surrogate_slope))


@contextlib.contextmanager
def compiled_neurons(enabled: bool = True):
    """Swap the network's elementwise neuron steps (SAF: saf_step_fused; LIF: lif_step, used by
    OTTT and BPTT) for torch.compile'd ones, forward and backward; restored on exit."""
    import saf.train.modules.network as netmod
    if not enabled:
        yield
        return
    saved = {"saf_step_fused": netmod.saf_step_fused, "lif_step": netmod.lif_step}
    try:
        netmod.saf_step_fused = torch.compile(_saf_reference, dynamic=True)
        netmod.lif_step = torch.compile(saved["lif_step"], dynamic=True)
        yield
    finally:
        for name, fn in saved.items():
            setattr(netmod, name, fn)


def compile_experiment(step: BenchStep, methods, steps: int, log) -> dict:
    """The record of the torch.compile experiment on `step` (one minibatch per method, `steps` rounds)."""
    rec = {"tried": True, "what": "torch.compile(dynamic=True) of the elementwise neuron steps "
           "(SAF: the plain-op saf_step in place of saf_step_fused; LIF: lif_step, used by OTTT/BPTT; "
           "surrogate included), forward and backward; the table above stays eager",
           "T": step.T, "ok": False, "error": None}
    if not hasattr(torch, "compile"):
        rec.update(tried=False, error="torch.compile not available")
        return rec
    ms = [m for m in methods]
    ind_cfg, threads = None, None
    try:
        import torch._inductor.config as ind_cfg          # no compile-worker pool left busy
        threads, ind_cfg.compile_threads = ind_cfg.compile_threads, 1
    except Exception:  # noqa: BLE001
        ind_cfg = None
    import logging
    cpp_log = logging.getLogger("torch.utils.cpp_extension")   # "No CUDA runtime is found" on CPU hosts
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)
    try:
        return _compile_run(rec, step, ms, steps, log)
    finally:
        cpp_log.setLevel(level)
        if ind_cfg is not None:
            ind_cfg.compile_threads = threads


def _compile_run(rec: dict, step: BenchStep, ms: list, steps: int, log) -> dict:
    net, (x, y), T, opt, loss_fn, device = step.net, step.batch, step.T, step.opt, step.loss_fn, step.device
    try:
        # exactness of the compiled SAF step against the eager one on the first layer's shape
        from saf.train.functional.neuron import saf_step_fused
        shape = (x.shape[0],) + tuple(net.plan.layers[0].out_shape)
        g = torch.Generator(device="cpu").manual_seed(1)
        U = (torch.randn(shape, generator=g) * 2).to(device).requires_grad_(True)
        a = torch.rand(shape, generator=g).to(device)
        t0 = time.perf_counter()
        cstep = torch.compile(_saf_reference, dynamic=True)
        out_c = cstep(U, a, net.lam, net.theta, net.surrogate, net.surrogate_slope)
        (gc_,) = torch.autograd.grad(out_c.sum(), U)
        out_e = saf_step_fused(U, a, net.lam, net.theta, net.surrogate, net.surrogate_slope)
        (ge_,) = torch.autograd.grad(out_e.sum(), U)
        rec["bit_exact_saf_step"] = bool(torch.equal(out_c, out_e) and torch.equal(gc_, ge_))
        eager = {m: [] for m in ms}
        comp = {m: [] for m in ms}
        with compiled_neurons(True):
            for m in ms:                                   # compile (all shapes, fwd and bwd)
                train_batch(net, x, y, T, m, opt, loss_fn)
            sync(device)
            rec["compile_s"] = round(time.perf_counter() - t0, 2)
            time_round(step, ms, {m: [] for m in ms}, {m: [] for m in ms}, 0)
        time_round(step, ms, {m: [] for m in ms}, {m: [] for m in ms}, 0)
        eager_cpu = {m: [] for m in ms}
        comp_cpu = {m: [] for m in ms}
        for r in range(steps):                             # eager and compiled back to back per method
            for m in ms[r % len(ms):] + ms[:r % len(ms)]:
                time_round(step, [m], eager, eager_cpu, 0)
                with compiled_neurons(True):
                    time_round(step, [m], comp, comp_cpu, 0)
        med = lambda d: {m: statistics.median(v) for m, v in d.items()}  # noqa: E731
        rec.update(eager_s=med(eager), compiled_s=med(comp), eager_cpu_s=med(eager_cpu), compiled_cpu_s=med(comp_cpu))
        rec["speedup"] = {m: rec["eager_s"][m] / rec["compiled_s"][m] for m in ms}
        rec["speedup_cpu_time"] = {m: rec["eager_cpu_s"][m] / rec["compiled_cpu_s"][m] for m in ms}
        rec["ok"] = True
    except Exception as e:  # noqa: BLE001 - optional; fall back to eager and say why
        rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        if log:
            log(f"torch.compile experiment failed, eager only: {rec['error']}")
    return rec


def want_compile(mode: str, device: str) -> bool:
    if mode == "off":
        return False
    if mode == "on":
        return True
    if not hasattr(torch, "compile"):
        return False
    if device.startswith("cuda"):
        return True
    import shutil
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
