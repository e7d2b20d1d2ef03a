"""`saf bench infer --peers`: the bit-exact emulator against the float simulators a user already runs, in one
process, on the same inputs, the same T and the same number of threads:

  emulator   the bundle's integer network (deploy/backends/emulator*.py)
  onnx       the bundle's model.onnx in onnxruntime (CPU provider)
  torch-lif  the trained float network (the bundle's source.safetensors) in its LIF form, plain torch,
             float32, torch.no_grad (SpikingNet.infer(form="lif"))
  snntorch   the same float weights in snnTorch 1.0, each spiking layer rebuilt with its own modes (below),
             when snntorch is importable

Each spiking layer in snnTorch's own neuron, threshold = theta, beta = lam (core/neuron_modes.py for the modes):
  exact (the same float network, up to float rounding), compare ">" only:
    reset zero                  Leaky(reset_mechanism="zero"): u[t] = lam u[t-1] (1 - s[t-1]) + I[t]
    reset subtract-undecayed    Leaky("subtract"): u[t] = lam u[t-1] - theta s[t-1] + I[t]; with a synaptic
                                current Synaptic(alpha, "subtract") (syn[t] = alpha syn[t-1] + I[t], u adds syn[t]);
                                with a dense feedback from itself RLeaky("subtract") whose recurrent Linear holds
                                W_fb (bias 0): u adds W_fb s[t-1]
  approximate (a plain layer, no current or feedback): compare ">=" (snnTorch fires on u > theta: ties differ), and
    saf's reset subtract, u[t] = lam (u[t-1] - theta s[t-1]) + I[t], as Leaky("subtract", reset_delay=False), whose
    post-reset potential w[t] = beta w[t-1] + I[t] - theta s[t] is ours written in w = u - theta s, except that
    while w stays above theta it subtracts its earlier reset once more;
  not comparable (the peer is not run, its row says why): any other layer. snnTorch's Synaptic and RLeaky with
    reset "zero" zero the step's input too (u[t] = (1 - s[t-1]) (beta u[t-1] + I[t])), not saf's zero reset;
    feedback between layers, conv feedback, or feedback with a current have no snnTorch neuron here.
Each peer's agreement with the emulator's predictions is reported (the integer network is the quantized one: a
few % may differ even for an exact rebuild); the snnTorch row says whether its rebuild is exact.

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


def _neuron(snn, net, i: int, fb: list) -> tuple:
    """(snnTorch neuron of spiking layer i, exact?) per the module docstring; ValueError "not comparable: ..."."""
    lp = net.plan.layers[i]
    lam, theta, alpha = float(net.lam), float(net.theta), float(lp.syn_decay or 0.0)
    exact = lp.compare == ">" and lp.reset in ("zero", "subtract-undecayed")
    why = ""
    if (alpha or fb) and not (lp.compare == ">" and lp.reset == "subtract-undecayed"):
        why = (f"reset {lp.reset!r} / compare {lp.compare!r} with a synaptic current or feedback (snnTorch's Synaptic "
               f"and RLeaky run reset 'subtract-undecayed' with compare '>' as saf does, nothing else)")
    elif fb and (alpha or len(fb) > 1 or fb[0][0].src != i or fb[0][0].kind != "linear"):
        why = "feedback other than one dense synapse from the layer into itself without a current (RLeaky)"
    if why:
        raise ValueError(f"snnTorch peer not comparable: spiking layer {i}: {why}")
    mech = "zero" if lp.reset == "zero" else "subtract"
    delay = lp.reset != "subtract"                   # saf's decayed subtraction: the approximation (docstring)
    if alpha:
        return snn.Synaptic(alpha=alpha, beta=lam, threshold=theta, reset_mechanism=mech), exact
    if fb:
        import torch
        w = fb[0][1].effective_weight().detach()
        m = snn.RLeaky(beta=lam, threshold=theta, linear_features=int(w.shape[0]), reset_mechanism=mech)
        with torch.no_grad():
            m.recurrent.weight.copy_(w)
            m.recurrent.bias.zero_()
        return m, exact
    return snn.Leaky(beta=lam, threshold=theta, reset_mechanism=mech, reset_delay=delay), exact


class SnnTorchNet:
    """The float network rebuilt from snnTorch's own neurons, layer by layer (module docstring); `exact` says
    whether every layer is the same float network."""

    def __init__(self, net):
        import snntorch as snn

        from saf.train.modules.network import SpikingNet
        if type(net) is not SpikingNet:
            raise ValueError(f"snnTorch peer not comparable: a {type(net).__name__} (its own neurons or readout) is "
                             f"not rebuilt; plain SpikingNet networks only")
        p = net.plan
        fbs = [[(f, net.fb[k]) for k, f in enumerate(p.feedback) if f.dst == i] for i in range(len(net.blocks))]
        if any(f.src != f.dst for f in p.feedback):
            f = next(f for f in p.feedback if f.src != f.dst)
            raise ValueError(f"snnTorch peer not comparable: feedback from spiking layer {f.src} into layer {f.dst} "
                             f"(RLeaky feeds a layer only its own spikes)")
        self.layers = [_layer(b).eval() for b in net.blocks]
        built = [_neuron(snn, net, i, fbs[i]) for i in range(len(net.blocks))]
        self.lifs = [b[0] for b in built]
        self.exact = all(b[1] for b in built)
        self.readout = _layer(net.readout).eval()
        self.leak = net.readout_kind.leak(net.lam)

    def __call__(self, x, T: int):
        import torch
        with torch.no_grad():
            states = [_init(lif) for lif in self.lifs]
            total = None
            for _ in range(T):
                h = x
                for i, (layer, lif) in enumerate(zip(self.layers, self.lifs)):
                    out = lif(layer(h), *states[i])
                    h, states[i] = out[0].to(x.dtype), _states(lif, out)
                o = self.readout(h)
                total = o if total is None else (total * self.leak + o if self.leak != 1.0 else total + o)
            return total


def _states(lif, out) -> tuple:
    """The states a neuron's forward returned (after its spikes), in the order it takes them: RLeaky returns
    (spk, mem) and takes both back (its feedback reads spk); Leaky (spk, mem) and Synaptic (spk, syn, mem) the rest."""
    if type(lif).__name__ == "RLeaky":
        return out[0].to(out[1].dtype), out[1]          # its spikes come back float32 whatever mem's dtype is
    return tuple(out[1:])


def _init(lif) -> tuple:
    """The zero states a neuron's forward takes after its input: (mem,) for Leaky, (syn, mem) for Synaptic,
    (spk, mem) for RLeaky (each reshaped to the input at the first step)."""
    st = lif.reset_mem()
    return tuple(st) if isinstance(st, tuple) else (st,)


def _chunks(fn, x, size: int = 512):
    import torch
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)]).numpy()


def bench_peers(bundle_path, data=None, limit=None, repeats: int = 3, data_root=None, threads: int = 2,
                peers=PEERS) -> dict:
    import torch

    from saf.deploy.backends.registry import BackendError, Bundle
    from saf.deploy.verify.inputs import load_inputs
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
    runs, notes, rebuilt = _peer_runs(peers, b, net, x, xq)
    out, times = _time_runs(runs, repeats, pin)
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
                     "agree_with_emulator": None if ref is None else float((pred == ref).mean()),
                     **({"rebuild": rebuilt[p]} if p in rebuilt else {})})
    emu = next((r for r in rows if r["peer"] == "emulator" and r["available"]), None)
    for r in rows:
        if emu and r["available"]:
            r["emulator_speedup"] = emu["samples_per_s"] / r["samples_per_s"]
    return {"kind": "saf-bench-infer-peers", "bundle": str(bundle_path), "dataset": name, "T": T,
            "samples": int(len(xq)), "repeats": repeats, "threads": {"torch": threads,
                                                                      "numba": _numba_threads(),
                                                                      "onnxruntime": "its default (physical cores)"},
            "rows": rows}


def _peer_runs(peers, b, net, x, xq) -> tuple:
    """(runs, notes, rebuilt): peer -> a call running it on all inputs; peer -> why it does not run;
    peer -> "exact"/"approximate" for the snnTorch rebuild. b: the Bundle, net: its float source model,
    x: the float inputs, xq: the quantized ones."""
    from saf.deploy.backends.registry import BackendError, get_backend, run_spec

    T = b.graph.T
    runs, notes, rebuilt = {}, {}, {}
    for p in peers:
        if p in ("emulator", "onnx"):
            spec = get_backend(p)
            why = spec.unavailable() or spec.refuses(b.graph)
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
            rebuilt[p] = "exact" if sn.exact else "approximate"
            runs[p] = lambda: _chunks(lambda c: sn(c, T), x)
        else:
            raise BackendError(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    return runs, notes, rebuilt


def _time_runs(runs: dict, repeats: int, pin) -> tuple:
    """(outputs, seconds): one warm-up call per peer, then `repeats` timed rounds in rotating order, pin()
    setting the thread counts before every call."""
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
    return out, times


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
    lines += [f"{q['peer']}: an approximate rebuild (compare >= or saf's decayed subtraction in snnTorch's neuron, "
              f"deploy/bench/peers.py): not the same float network" for q in r["rows"] if q.get("rebuild") == "approximate"]
    lines.append("emulator x: the emulator's samples/s over the peer's; same pred: argmax of the readout equal to the "
                 "emulator's (the integer network is the quantized one; float peers differ on a few inputs)")
    return "\n".join(lines)
