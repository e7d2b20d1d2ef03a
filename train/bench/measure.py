"""How one training minibatch is measured: wall and CPU time around it, the allocator's peak (CUDA, or the
CPU allocator through the torch profiler), the process's resident peak, and FLOPs; deterministic
saved-tensor bytes come from train/memory.py."""
from __future__ import annotations

import contextlib
import time
import gc
import os
import platform
from dataclasses import dataclass
from typing import Iterable, Optional

import torch

from saf.train.memory import SavedTensorMeter
from saf.train.methods.registry import train_batch


@dataclass(frozen=True)
class BenchStep:
    """What one timed training minibatch runs on: the network, its batch (x, y), T, optimizer, loss, device."""
    net: object
    batch: tuple
    T: int
    opt: object
    loss_fn: object
    device: object


def time_round(step: BenchStep, methods, times: dict, cpu_times: dict, order_shift: int) -> None:
    """One minibatch per method (the order rotated by order_shift), its wall and CPU seconds appended to
    times[m] and cpu_times[m]."""
    ms = list(methods)
    k = order_shift % len(ms)
    for m in ms[k:] + ms[:k]:
        x, y = step.batch
        sync(step.device)
        w0, c0 = time.perf_counter(), time.process_time()
        train_batch(step.net, x, y, step.T, m, step.opt, step.loss_fn)
        sync(step.device)
        times[m].append(time.perf_counter() - w0)
        cpu_times[m].append(time.process_time() - c0)


# ------------------------------------------------------------------ measurement helpers
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _tensor_bytes(ts: Iterable) -> int:
    return sum(t.numel() * t.element_size() for t in ts if torch.is_tensor(t))


def _static_bytes(net, opt, *batch) -> int:
    """Bytes live before a minibatch starts: parameters, their gradients, optimizer state, the batch."""
    n = _tensor_bytes(net.parameters()) + _tensor_bytes(p.grad for p in net.parameters() if p.grad is not None)
    for st in opt.state.values():
        n += _tensor_bytes(st.values())
    return n + _tensor_bytes(batch)


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_peak() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _CPUAllocPeak:
    """Peak bytes allocated by torch's CPU allocator inside the block, from profiler memory events
    (relative to the start). `peak` stays None where the profiler cannot report them."""

    def __init__(self):
        self.peak: Optional[int] = None
        self._prof = None

    def __enter__(self):
        try:
            from torch.profiler import ProfilerActivity, profile
            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._prof.__enter__()
        except Exception:  # noqa: BLE001 - measurement is optional
            self._prof = None
        return self

    def __exit__(self, *exc):
        if self._prof is None:
            return False
        self._prof.__exit__(*exc)
        try:
            evs = [e for e in self._prof.profiler.kineto_results.events()
                   if e.name() == "[memory]" and "CPU" in str(e.device_type())]
            evs.sort(key=lambda e: e.start_ns())
            cur = peak = 0
            for e in evs:
                cur += int(e.nbytes())
                peak = max(peak, cur)
            self.peak = peak
        except Exception:  # noqa: BLE001 - private profiler API; report nothing rather than fail
            self.peak = None
        return False


@contextlib.contextmanager
def quiet_profiler():
    """The Kineto profiler prints start/stop lines on stderr (fd 2); hide them during the block."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


def _flop_counter():
    try:
        from torch.utils.flop_counter import FlopCounterMode
        return FlopCounterMode(display=False)
    except Exception:  # noqa: BLE001
        return None


def measure_memory(net, x, y, T: int, method: str, opt, loss_fn, device: str) -> dict:
    """One minibatch with every memory probe on (see the module docstring)."""
    opt.zero_grad(set_to_none=True)
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    static = _static_bytes(net, opt, x, y)
    meter = SavedTensorMeter(net.parameters())
    flops = _flop_counter()
    rss_ok = (not cuda) and _reset_rss_peak()
    alloc = _CPUAllocPeak() if not cuda else contextlib.nullcontext()
    quiet = quiet_profiler() if not cuda else contextlib.nullcontext()

    def after_backward(_t):
        meter.graph_freed()

    with quiet, alloc, (flops if flops is not None else contextlib.nullcontext()), meter:
        r = train_batch(net, x, y, T, method, opt, loss_fn, after_backward=after_backward)
    sync(device)
    out = {"saved_bytes": int(meter.peak), "state_bytes": int(r["state_bytes"]),
           "flops": int(flops.get_total_flops()) if flops is not None else None}
    if cuda:
        out["memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
        out["memory_source"] = "torch.cuda.max_memory_allocated"
        out["rss_peak_bytes"] = None
    else:
        peak = alloc.peak
        out["memory_bytes"] = None if peak is None else int(static + peak)
        out["memory_source"] = "cpu allocator peak (profiler) + live bytes before the batch"
        out["rss_peak_bytes"] = _rss_peak() if rss_ok else None
    out["static_bytes"] = int(static)
    out["activation_bytes"] = out["saved_bytes"] + out["state_bytes"]
    return out
