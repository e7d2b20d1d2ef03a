"""`saf bench infer --peers`: the bit-exact emulator against the float simulators a user already runs, in one
process, on the same inputs, the same T and the same number of threads:

  emulator   the bundle's integer network (deploy/backends/emulator*.py)
  onnx       the bundle's model.onnx in onnxruntime (CPU provider)
  torch-lif  the trained float network (the bundle's source.safetensors) in its LIF form, plain torch,
             float32, torch.no_grad (SpikingNet.infer(form="lif"))
  snntorch   the same float weights in snnTorch 1.0 (nn.Conv2d / nn.Linear + snn.Leaky, beta = lam,
             threshold = theta, subtractive reset without delay), when snntorch is importable

snn.Leaky(reset_mechanism="subtract", reset_delay=False) keeps the post-reset potential
w[t] = beta w[t-1] + I[t] - theta s[t], s[t] = H(beta w[t-1] + I[t] - theta): our LIF form
u[t] = lam (u[t-1] - theta s[t-1]) + I[t] written in w = u - theta s, except that snnTorch fires on
u > theta (ours on u >= theta) and, while w stays above theta, subtracts its earlier reset once more.
So the peers are the same network up to float rounding, ties and that saturation; each peer's agreement
with the emulator's predictions is reported (the integer network is the quantized one: a few % differ).

Timing: one untimed warm-up of each peer, then `repeats` rounds in which every peer runs once, the order
rotating (A B C D, B C D A, ...), median per peer."""
from __future__ import annotations

import statistics
import time

import numpy as np

PEERS = ("emulator", "onnx", "torch-lif", "snntorch")


def _snntorch():
    try:
        import snntorch
        return snntorch, ""
    except Exception as e:  # noqa: BLE001 - optional peer
        return None, f"snntorch is not importable here ({type(e).__name__}: {e}); pip install snntorch to compare"


def _glue(pre) -> list:
    import torch.nn as nn
    mods = []
    for op in pre:
        if op[0] == "avgpool":
            mods.append(nn.AvgPool2d(op[1]))
        elif op[0] == "gap":
            mods.append(nn.AdaptiveAvgPool2d(1))
            mods.append(nn.Flatten(1))
        elif op[0] == "flatten":
            mods.append(nn.Flatten(1))
    return mods


def _layer(syn):
    """nn.Conv2d / nn.Linear with the synapse's effective (standardized) weight and its bias, behind its glue."""
    import torch
    import torch.nn as nn
    w = syn.effective_weight().detach()
    if syn.kind == "conv":
        m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], syn.stride, syn.padding, bias=True)
    else:
        m = nn.Linear(w.shape[1], w.shape[0], bias=True)
    with torch.no_grad():
        m.weight.copy_(w)
        m.bias.copy_(syn.bias.detach() if syn.bias is not None else torch.zeros(w.shape[0]))
    return nn.Sequential(*_glue(syn.pre), m)


class SnnTorchNet:
    """The float network rebuilt from snnTorch's own neuron (see the module docstring)."""

    def __init__(self, net):
        import snntorch as snn

        from saf.train.modules.network import SpikingNet
        if type(net) is not SpikingNet:
            raise ValueError(f"snnTorch peer: a {type(net).__name__} (its own neurons or readout) is not rebuilt; "
                             f"plain SpikingNet networks only")
        if len(net.fb):
            raise ValueError("snnTorch peer: feedback connections are not rebuilt (feed-forward networks only)")
        self.layers = [_layer(b).eval() for b in net.blocks]
        self.lifs = [snn.Leaky(beta=float(net.lam), threshold=float(net.theta), reset_mechanism="subtract",
                               reset_delay=False) for _ in net.blocks]
        self.readout = _layer(net.readout).eval()
        self.leak = net.readout_kind.leak(net.lam)

    def __call__(self, x, T: int):
        import torch
        with torch.no_grad():
            mems = [lif.init_leaky() for lif in self.lifs]
            total = None
            for _ in range(T):
                h = x
                for i, (layer, lif) in enumerate(zip(self.layers, self.lifs)):
                    h, mems[i] = lif(layer(h), mems[i])
                o = self.readout(h)
                total = o if total is None else (total * self.leak + o if self.leak != 1.0 else total + o)
            return total


def _chunks(fn, x, size: int = 512):
    import torch
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)]).numpy()


def bench_peers(bundle_path, data=None, limit=None, repeats: int = 3, data_root=None, threads: int = 2,
                peers=PEERS) -> dict:
    import torch

    from saf.deploy.backends.registry import BackendError, Bundle, get_backend, run_spec
    from saf.deploy.inputs import load_inputs
    from saf.export.bundle.store import SOURCE_FILE
    from saf.train.checkpoint import load_model

    from saf.deploy.verify.fp_dt import is_fp_bundle

    b = Bundle.load(bundle_path)
    g = b.graph
    if is_fp_bundle(b):
        raise BackendError(f"{bundle_path}: --peers compares time-stepped LIF networks; an FP bundle is a "
                           f"continuous-time network (use saf bench infer without --peers)")
    if g.input_time_varying:
        raise BackendError(f"{bundle_path}: --peers compares constant-input (image) networks; this one takes "
                           f"spike trains")
    xq, y, name = load_inputs(b, data, data_root, limit)
    T = g.T

    def pin():
        """torch's and numba's thread counts, set again before every run: numba's OpenMP layer and torch
        share the OpenMP runtime here, so one's parallel launch can change the other's count."""
        torch.set_num_threads(threads)
        try:
            import numba
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except Exception:  # noqa: BLE001 - the emulator then uses numba's default
            pass
    net, _, _ = load_model(f"{b.path}/{SOURCE_FILE}", data=b.file_bytes(SOURCE_FILE, BackendError))
    net = net.float().eval()
    x = torch.from_numpy(np.asarray(xq, np.float32) / np.float32(g.input_scale))
    runs, notes = {}, {}
    for p in peers:
        if p in ("emulator", "onnx"):
            spec = get_backend(p)
            why = spec.unavailable() or spec.refuses(g)
            if why:
                notes[p] = why
                continue
            runs[p] = (lambda s: (lambda: run_spec(s, b, xq, record_spikes=False).readout))(spec)
        elif p == "torch-lif":
            runs[p] = lambda: _chunks(lambda c: net.infer(c, T, "lif")[0], x)
        elif p == "snntorch":
            mod, why = _snntorch()
            if mod is None:
                notes[p] = why
                continue
            try:
                sn = SnnTorchNet(net)
            except ValueError as e:
                notes[p] = str(e)
                continue
            runs[p] = lambda: _chunks(lambda c: sn(c, T), x)
        else:
            raise BackendError(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    out = {p: None for p in runs}
    for p, fn in runs.items():                       # warm-up: compiled kernels, sessions, thread pools
        pin()
        out[p] = np.asarray(fn())
    times = {p: [] for p in runs}
    order = list(runs)
    for r in range(repeats):
        k = r % len(order)
        for p in order[k:] + order[:k]:
            pin()
            t0 = time.perf_counter()
            runs[p]()
            times[p].append(time.perf_counter() - t0)
    ref = out["emulator"].argmax(1) if "emulator" in out else None
    rows = []
    for p in peers:
        if p not in runs:
            rows.append({"peer": p, "available": False, "note": notes.get(p, "")})
            continue
        sec = statistics.median(times[p])
        pred = out[p].argmax(1)
        rows.append({"peer": p, "available": True, "samples": int(len(xq)), "seconds": sec, "times_s": times[p],
                     "samples_per_s": len(xq) / sec, "accuracy": float((pred == y).mean()),
                     "agree_with_emulator": None if ref is None else float((pred == ref).mean())})
    emu = next((r for r in rows if r["peer"] == "emulator" and r["available"]), None)
    for r in rows:
        if emu and r["available"]:
            r["emulator_speedup"] = emu["samples_per_s"] / r["samples_per_s"]
    return {"kind": "saf-bench-infer-peers", "bundle": str(bundle_path), "dataset": name, "T": T,
            "samples": int(len(xq)), "repeats": repeats, "threads": {"torch": threads,
                                                                      "numba": _numba_threads(),
                                                                      "onnxruntime": "its default (physical cores)"},
            "rows": rows}


def _numba_threads():
    try:
        import numba
        return numba.get_num_threads()
    except Exception:  # noqa: BLE001
        return None


def format_peers(r: dict) -> str:
    th = r["threads"]
    lines = [f"saf bench infer --peers: {r['bundle']} on {r['dataset']}, {r['samples']} samples, T={r['T']}, "
             f"median of {r['repeats']} (peers interleaved); threads: torch {th['torch']}, numba {th['numba']}, "
             f"onnxruntime {th['onnxruntime']}",
             f"{'peer':<10} {'samples/s':>11} {'ms/sample':>10} {'accuracy':>9} {'same pred as emulator':>22} "
             f"{'emulator x':>11}"]
    for q in r["rows"]:
        if not q["available"]:
            lines.append(f"{q['peer']:<10} not available: {q['note']}")
            continue
        ag = "-" if q["agree_with_emulator"] is None else f"{q['agree_with_emulator']:.2%}"
        sp = q.get("emulator_speedup")
        lines.append(f"{q['peer']:<10} {q['samples_per_s']:>11.1f} {1000 * q['seconds'] / q['samples']:>10.3f} "
                     f"{q['accuracy']:>9.2%} {ag:>22} {('-' if sp is None else f'{sp:.2f}'):>11}")
    lines.append("emulator x: the emulator's samples/s over the peer's; same pred: argmax of the readout equal to the "
                 "emulator's (the integer network is the quantized one; float peers differ on a few inputs)")
    return "\n".join(lines)
