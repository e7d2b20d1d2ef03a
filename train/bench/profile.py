"""`saf bench train --profile`: where one training minibatch spends its time and its saved-tensor memory,
per phase and per layer, for each method at one T (default 6).

Phases (forward first, then the rest of the minibatch):
  sWS        each layer's effective weight: the scaled weight standardization (train/functional/ws.py)
  synapse    W x of each layer and the readout (convolution / linear and the pooling glue in front)
  neuron     the neuron update: SAF's accumulation step (a[t]), LIF's u/s step and OTTT's trace update
  loss       the loss of the step (or of the minibatch)
  other      everything else on the forward side (bias adds, OTTT's value/gradient substitution, state)
  backward   every loss.backward() of the minibatch (autograd, all layers)
  optimizer  optimizer.step() and zero_grad()

Time: exclusive wall time per phase, summed over one minibatch, median over `repeats` minibatches, and the
same per layer for the phases that run layer by layer (sWS and synapse: `time_by_layer`; the neuron step,
the loss and backward run over all layers at once and are not split); the
methods are interleaved (A B C A B C ..., the order rotating) so a load change on a shared machine hits
all alike. The probes (a perf_counter pair per call) add a little; the un-probed minibatch time is
measured in the same rounds and reported beside (`time_s`).
Memory: bytes autograd saves for backward (SavedTensorMeter, deterministic), split by the phase and layer
that saved them, at the peak (one step's graph for SAF/OTTT, the whole sequence for BPTT).
Top ops: torch.profiler's self CPU time per aten op over one extra minibatch (optional, `ops=True`).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Optional, Sequence

import torch

from saf.train.bench.measure import BenchStep
from saf.train.memory import SavedTensorMeter
from saf.train.methods.registry import train_batch

PHASES = ("sWS", "synapse", "neuron", "loss", "other", "backward", "optimizer")
FORWARD = ("sWS", "synapse", "neuron", "loss", "other")
LAYERED = ("sWS", "synapse")                         # phases timed per layer as well
PROFILE_METHODS = ("saf-e", "saf-f", "ottt-o", "ottt-a", "bptt")
PROFILE_PAIRS = (("saf-e", "ottt-o"), ("saf-f", "ottt-a"))


class _Probes:
    """Exclusive wall time per phase and the current (phase, layer) for the saved-tensor tag."""

    def __init__(self):
        self.acc = {p: 0.0 for p in PHASES}
        self.by_layer = {}                           # (phase, layer) -> exclusive seconds
        self.stack = [("other", "-")]
        self.layer = "-"
        self.last = time.perf_counter()

    def _charge(self, now: float) -> None:
        phase, layer = self.stack[-1]
        self.acc[phase] += now - self.last
        if phase in LAYERED:
            self.by_layer[(phase, layer)] = self.by_layer.get((phase, layer), 0.0) + now - self.last

    def enter(self, phase: str, layer: Optional[str] = None):
        now = time.perf_counter()
        self._charge(now)
        if layer is not None:
            self.layer = layer
        self.stack.append((phase, self.layer))
        self.last = now

    def leave(self):
        now = time.perf_counter()
        self._charge(now)
        self.stack.pop()
        self.last = now

    def reset(self):
        self.acc = {p: 0.0 for p in PHASES}
        self.by_layer = {}
        self.stack = [("other", "-")]
        self.layer = "-"
        self.last = time.perf_counter()

    def tag(self):
        return self.stack[-1]

    def wrap(self, fn, phase: str, layer=None):
        def probed(*a, **k):
            self.enter(phase, layer(a) if callable(layer) else layer)
            try:
                return fn(*a, **k)
            finally:
                self.leave()
        return probed


@contextlib.contextmanager
def phase_probes(net, opt, probes: _Probes):
    """Wrap the functions each phase runs (restored on exit); the network's code is not changed."""
    import saf.train.modules.network as netmod
    import saf.train.modules.synapse as synmod

    names = {id(b): f"L{i}" for i, b in enumerate(net.blocks)}
    names[id(net.readout)] = "readout"
    names.update({id(f): f"fb{i}" for i, f in enumerate(net.fb)})
    saved = [(synmod.Synapse, "effective_weight", synmod.Synapse.effective_weight),
             (synmod.Synapse, "forward", synmod.Synapse.forward), (torch.Tensor, "backward", torch.Tensor.backward)]
    saved += [(netmod, n, getattr(netmod, n)) for n in ("saf_step_fused", "lif_step", "trace_step")]
    saved += [(opt, n, getattr(opt, n)) for n in ("step", "zero_grad")]
    try:
        layer = lambda a: names.get(id(a[0]), "?")  # noqa: E731 - the Synapse the call belongs to
        synmod.Synapse.effective_weight = probes.wrap(synmod.Synapse.effective_weight, "sWS", layer)
        synmod.Synapse.forward = probes.wrap(synmod.Synapse.forward, "synapse", layer)
        torch.Tensor.backward = probes.wrap(torch.Tensor.backward, "backward")
        for n in ("saf_step_fused", "lif_step", "trace_step"):
            setattr(netmod, n, probes.wrap(getattr(netmod, n), "neuron"))
        opt.step = probes.wrap(opt.step, "optimizer")
        opt.zero_grad = probes.wrap(opt.zero_grad, "optimizer")
        yield probes
    finally:
        for obj, name, fn in reversed(saved):
            if obj is opt:
                delattr(opt, name)                      # back to the class's method
            else:
                setattr(obj, name, fn)


def _top_ops(net, x, y, T, method, opt, loss_fn, n: int = 10) -> list:
    from torch.profiler import ProfilerActivity, profile

    from saf.train.bench.measure import quiet_profiler
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU]) as prof:
        train_batch(net, x, y, T, method, opt, loss_fn)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:n]
    return [{"op": e.key, "calls": int(e.count), "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 3)} for e in rows]


def profile_train(step: BenchStep, methods: Sequence[str] = PROFILE_METHODS, repeats: int = 3,
                  warmup: int = 1, ops: bool = True, log=None) -> dict:
    """Per-phase time and saved bytes of each method on the minibatch step.batch of step.net, trained with
    step.opt and step.loss_fn (see the module docstring). Returns a JSON-able dict."""
    net, (x, y), T, opt, loss_fn = step.net, step.batch, step.T, step.opt, step.loss_fn
    probes = _Probes()
    ms = list(methods)
    for m in ms:
        for _ in range(warmup):
            train_batch(net, x, y, T, m, opt, loss_fn)
    phase_t = {m: {p: [] for p in PHASES} for m in ms}
    layer_t = {m: {} for m in ms}                        # layer -> [seconds of sWS + synapse per repeat]
    probed_t = {m: [] for m in ms}
    plain_t = {m: [] for m in ms}
    for r in range(repeats):
        k = r % len(ms)
        for m in ms[k:] + ms[:k]:
            t0 = time.perf_counter()
            train_batch(net, x, y, T, m, opt, loss_fn)
            plain_t[m].append(time.perf_counter() - t0)
            with phase_probes(net, opt, probes):
                probes.reset()
                t0 = time.perf_counter()
                train_batch(net, x, y, T, m, opt, probes.wrap(loss_fn, "loss"))
                probes.leave()                           # close the root "other" span
                probed_t[m].append(time.perf_counter() - t0)
            for p in PHASES:
                phase_t[m][p].append(probes.acc[p])
            per = {}
            for (_p, layer), sec in probes.by_layer.items():
                per[layer] = per.get(layer, 0.0) + sec
            for layer, sec in per.items():
                layer_t[m].setdefault(layer, []).append(sec)
    out = {}
    for m in ms:
        meter = SavedTensorMeter(net.parameters(), tag=probes.tag)
        with phase_probes(net, opt, probes):
            probes.reset()
            with meter:
                res = train_batch(net, x, y, T, m, opt, probes.wrap(loss_fn, "loss"),
                                  after_backward=lambda _t: meter.graph_freed())
        by_phase, by_layer = {p: 0 for p in PHASES}, {}
        for (p, layer), n in meter.peak_by_tag.items():
            by_phase[p] += n
            by_layer.setdefault(layer, {})
            by_layer[layer][p] = by_layer[layer].get(p, 0) + n
        phases = {p: statistics.median(v) for p, v in phase_t[m].items()}
        rec = {"time_s": statistics.median(plain_t[m]), "times_s": plain_t[m],
               "probed_time_s": statistics.median(probed_t[m]), "phases_s": phases,
               "forward_s": sum(phases[p] for p in FORWARD),
               "time_by_layer_s": {layer: statistics.median(v) for layer, v in layer_t[m].items()},
               "saved_bytes": int(meter.peak), "saved_by_phase": by_phase, "saved_by_layer": by_layer,
               "state_bytes": int(res["state_bytes"])}
        if ops:
            rec["top_ops"] = _top_ops(net, x, y, T, m, opt, loss_fn)
        out[m] = rec
        if log:
            log(f"  {m:7s} {rec['time_s'] * 1e3:9.1f} ms  saved {rec['saved_bytes'] / 2 ** 20:7.1f} MB")
    ratios = {}
    for a, b in PROFILE_PAIRS:
        if a in out and b in out:
            ra, rb = out[a], out[b]
            ratios[f"{a}/{b}"] = {"time": ra["time_s"] / rb["time_s"],
                                  "saved": ra["saved_bytes"] / rb["saved_bytes"] if rb["saved_bytes"] else None,
                                  "phases": {p: (ra["phases_s"][p] / rb["phases_s"][p] if rb["phases_s"][p] else None)
                                             for p in PHASES}}
    return {"kind": "saf-bench-train-profile", "T": T, "repeats": repeats, "warmup": warmup,
            "phases": list(PHASES), "methods": out, "ratios": ratios}


def format_profile(r: dict) -> str:
    ms = list(r["methods"])
    lines = [f"per-phase time (exclusive wall ms per minibatch, median of {r['repeats']}, methods interleaved) "
             f"and saved-tensor MB at the peak, T = {r['T']}", ""]
    hdr = f"{'method':8s} {'total':>8s} {'probed':>8s} " + " ".join(f"{p:>9s}" for p in PHASES)
    lines += [hdr, "-" * len(hdr)]
    for m in ms:
        q = r["methods"][m]
        lines.append(f"{m:8s} {q['time_s'] * 1e3:8.1f} {q['probed_time_s'] * 1e3:8.1f} "
                     + " ".join(f"{q['phases_s'][p] * 1e3:9.1f}" for p in PHASES))
    lines += ["", f"{'saved MB':8s} {'total':>8s} {'state':>8s} " + " ".join(f"{p:>9s}" for p in PHASES)]
    for m in ms:
        q = r["methods"][m]
        lines.append(f"{m:8s} {q['saved_bytes'] / 2 ** 20:8.2f} {q['state_bytes'] / 2 ** 20:8.2f} "
                     + " ".join(f"{q['saved_by_phase'][p] / 2 ** 20:9.2f}" for p in PHASES))
    layers = sorted({layer for q in r["methods"].values() for layer in q["saved_by_layer"]},
                    key=lambda s: (s[0] != "L", int(s[1:]) if s[1:].isdigit() else 0, s))
    lines += ["", "saved MB per layer (all phases): " + "  ".join(f"{layer:>7s}" for layer in layers)]
    for m in ms:
        per = r["methods"][m]["saved_by_layer"]
        lines.append(f"{m:8s} " + " " * 25 + "  ".join(f"{sum(per.get(layer, {}).values()) / 2 ** 20:7.2f}"
                                                      for layer in layers))
    lines += ["", "sWS + synapse ms per layer:      " + "  ".join(f"{layer:>7s}" for layer in layers)]
    for m in ms:
        per = r["methods"][m].get("time_by_layer_s", {})
        lines.append(f"{m:8s} " + " " * 25 + "  ".join(f"{per.get(layer, 0.0) * 1e3:7.1f}" for layer in layers))
    for pair, q in r["ratios"].items():
        ph = ", ".join(f"{p} {v:.2f}" for p, v in q["phases"].items() if v is not None)
        sv = "-" if q["saved"] is None else f"{q['saved']:.2f}"
        lines.append(f"\n{pair}: time {q['time']:.2f}, saved {sv}; per phase: {ph}")
    return "\n".join(lines)
