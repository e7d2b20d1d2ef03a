"""An FP run (--method fp, train/methods/fp/net.py) as NIR, and back.

FP's neuron is continuous-time, as NIR's are, and fits NIR's CubaLIF exactly (docs/methods.md#fp-neuron): the
current jumps by W at an input spike and decays with rate alpha, the potential integrates it and decays
with rate beta. NIR's `tau_syn I' = -I + w_in S` and `tau_mem v' = (v_leak - v) + r I` are that with
tau_syn = 1/alpha, w_in = tau_syn (a unit spike lifts I by 1, times the Linear's weight), tau_mem = 1/beta,
r = tau_mem, v_leak = 0, v_threshold = theta, v_reset = 0 (FP's subtraction of theta at the crossing,
where V = theta exactly). Each layer: Linear (float64, as FP trains) -> CubaLIF; the last CubaLIF feeds
Output, read as first spike times (lowest index on ties). What NIR cannot say travels in the graph
metadata `saf`: method fp, readout first_spike, FP's parameters (t_max, t_sim), its latency input code
and the discrete update saf export --target loihi uses (DISCRETE). `saf import` of such a file writes
the FP checkpoint again (weights bit for bit); any other CubaLIF with a decaying current is still refused.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saf.export.nir.conventions import FLAG_OF_COMPARE, FORMAT, FP_METHOD, SAF_META
from saf.export.nir.errors import NirError
from saf.export.nir.graph import Chain, kind
from saf.core.neuron_modes import COMPARE_GE, RESET_SUBTRACT

DISCRETE = ("export/fold/fp.py at dt = t_max / 2^k (saf export --dt-exp k): U[t] = trunc0(U (4095 - du) / 4096) + "
            "W_q s, V[t] = trunc0(V (4096 - D) / 4096) + U[t], fire V >= TH, V -= TH; du = 4095 - round(4096 "
            "e^(-alpha dt)), D = round(4096 (1 - e^(-beta dt))), W_q = round(W h(dt) S); readout: first spike step, "
            "lowest index on ties")


def _full(n: int, v: float) -> np.ndarray:
    return np.full((n,), float(v), np.float64)


def fp_graph(net, config: dict):
    """The NIRGraph of an FPNet (train/methods/fp/checkpoint.load_fp_checkpoint) and its config."""
    import nir

    p = net.params
    nodes = {"input": nir.Input(input_type={"input": np.array([net.sizes[0]])})}
    chain = ["input"]
    for l, w in enumerate(net.weights):
        n = int(w.shape[0])
        nodes[f"layer{l}_syn"] = nir.Linear(weight=np.array(w, np.float64))
        nodes[f"layer{l}_neuron"] = nir.CubaLIF(
            tau_syn=_full(n, 1.0 / p.alpha), tau_mem=_full(n, 1.0 / p.beta), r=_full(n, 1.0 / p.beta),
            v_leak=_full(n, 0.0), v_threshold=_full(n, p.theta), v_reset=_full(n, 0.0), w_in=_full(n, 1.0 / p.alpha),
            metadata={"saf_reset": "subtract", "saf_compare": ">="})
        chain += [f"layer{l}_syn", f"layer{l}_neuron"]
    nodes["output"] = nir.Output(output_type={"output": np.array([net.sizes[-1]])})
    chain.append("output")
    meta = {"format": FORMAT, "method": FP_METHOD, "readout": "first_spike", "reset": RESET_SUBTRACT,
            "compare": FLAG_OF_COMPARE[COMPARE_GE],
            "dataset": config.get("dataset"), "fp_params": asdict(p), "fp_code": asdict(net.code),
            "discrete": DISCRETE, "config": config}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata={SAF_META: json.dumps(meta)})


def is_fp(meta: dict) -> bool:
    """An FP run saf wrote, by its graph metadata `saf` (meta.saf_meta)."""
    return meta.get("method") == FP_METHOD


def _check(path, name: str, node, attr: str, want: float) -> None:
    v = np.asarray(getattr(node, attr, None), dtype=np.float64)
    if v.size == 0 or not (v == want).all():
        raise NirError(f"{path}: node '{name}' (CubaLIF): {attr} {v.ravel()[:1].tolist()} is not the value FP's "
                       f"parameters in the graph metadata give ({want!r})")


def fp_net(ch: Chain, meta: dict):
    """(FPNet, config) of a chain that fp_graph wrote, its saf metadata `meta`; NirError (one line) where it is
    not that graph."""
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode

    try:
        p = FPParams(**meta["fp_params"]).check()
        c = meta["fp_code"]
        code = LatencyCode(tuple(c["lo"]), tuple(c["hi"]), c["t_early"], c["t_late"], tuple(c.get("bias_times", ()))).check()
        config = meta.get("config") or {}
        if not isinstance(config, dict):
            raise TypeError(f"config {config!r} is not an object")
    except (KeyError, TypeError, ValueError) as e:
        raise NirError(f"{ch.path}: graph metadata 'saf' of an FP graph is unusable ({e})") from None
    if ch.recurrent:
        raise NirError(f"{ch.path}: recurrent synapse '{ch.recurrent[0][0]}': an FP network has no recurrent "
                       f"connections")
    body = ch.nodes[1:-1]
    weights = []
    for j in range(0, len(body), 2):
        (sn, syn), (nn, neu) = body[j], body[j + 1] if j + 1 < len(body) else (None, None)
        if kind(syn) != "Linear" or kind(neu) != "CubaLIF":
            raise NirError(f"{ch.path}: node '{sn}' ({kind(syn)}): an FP graph alternates Linear and CubaLIF nodes")
        for attr, want in (("tau_syn", 1.0 / p.alpha), ("w_in", 1.0 / p.alpha), ("tau_mem", 1.0 / p.beta),
                           ("r", 1.0 / p.beta), ("v_threshold", p.theta), ("v_leak", 0.0), ("v_reset", 0.0)):
            _check(ch.path, nn, neu, attr, want)
        weights.append(np.asarray(syn.weight, np.float64))
    try:
        net = FPNet(p, weights, code)
    except ValueError as e:
        raise NirError(f"{ch.path}: not an FP network ({e})") from None
    if net.sizes[0] != code.n_inputs:
        raise NirError(f"{ch.path}: the first Linear takes {net.sizes[0]} inputs, the latency code gives {code.n_inputs}")
    config = dict(config, source="nir", nir_file=Path(ch.path).name)
    return net, config


def write_fp_run(net, config: dict, out, force: bool = False) -> Path:
    """The FP checkpoint of (net, config) (fp_net) as run directory `out` (atomically)."""
    from saf.train.checkpoint import CHECKPOINT, RUN_DIR
    from saf.core.outdir import Staged
    from saf.train.methods.fp.checkpoint import save_fp_checkpoint

    with Staged(out, (RUN_DIR,), force) as tmp:
        save_fp_checkpoint(Path(tmp) / CHECKPOINT, net, config)
    return Path(out) / CHECKPOINT
