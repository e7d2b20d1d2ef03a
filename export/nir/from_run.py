"""A trained run as a NIR graph (`saf export RUN --target nir --out model.nir`).

Standard fields as NIR defines them, with the discretization this toolchain's import reads back
(neurons.py, step dt): a layer leaking by lam < 1 is LIF(tau = dt / (1 - lam), r = tau / dt, v_leak = 0,
v_threshold = theta, v_reset = 0) (snnTorch's own mapping: input gain dt r / tau = 1), lam = 1 is
IF(r = 1); a layer with a synaptic current decaying by alpha (spec "alpha") is CubaLIF(tau_syn = dt /
(1 - alpha), w_in = tau_syn / dt, tau_mem = tau and r as LIF's; tau_mem = r = inf for lam = 1), snnTorch
Synaptic's mapping (gains 1); AvgPool2d, Flatten, Conv2d and Affine carry the synapses (weights as the
network computes with them, scaled weight standardization applied); feedback edges are Affine/Conv2d synapses from a
neuron back into a neuron. What NIR cannot say travels in metadata: the graph's "saf" entry (JSON: dt,
T, reset, compare, input coding, dataset, readout) and each neuron's "saf_reset"/"saf_compare"; a
leaking readout (SAF-F) is an LI node after the readout synapse, a summing one ends at the synapse, a count
readout (train/readout.py COUNT: imported from a graph ending in a spiking node) ends at the output neuron.
A DSR run (train/methods/dsr/net.py): each layer's trained V^l as the v_threshold where it fires,
alpha V^l, with the amount its reset subtracts, V^l, in node metadata "saf_reset_by"; its spikes carry
V^l, so the next synapse's weights are written times V^(l-1) (in float64: the product of two float32
numbers is exact, and saf import divides it back exactly); its spiking output layer is one more
LIF, read by an identity Affine (+ LI leaking with lam for LIF): the spike counts; graph metadata adds
"method" and DSR's options "dsr" (alpha, readout, vth_min).
An FP run: fp.py (CubaLIF). Refused in one line: transposed feedback, layers with
different reset or compare modes (the import applies one to every layer).
"""
from __future__ import annotations

import json

import numpy as np

from saf.export.nir.conventions import DEFAULTS, DSR_KEY, FLAG_OF_COMPARE, FORMAT, RESET_BY, SAF_META
from saf.export.nir.errors import NirError
from saf.train.readout import COUNT, FIRST_SPIKE


def _full(shape, v, dtype=np.float32) -> np.ndarray:
    return np.full(tuple(int(d) for d in shape), float(v), dtype)


def _neuron(nir, lam: float, theta: float, shape, reset: str, compare: str, dt: float, reset_by=None,
            syn: float = 0.0):
    meta = {"saf_reset": reset, "saf_compare": compare}
    th = _full(shape, theta)
    if reset_by is not None:                 # DSR: alpha V^l held exactly (float64), V^l in metadata
        meta[RESET_BY] = float(reset_by)
        th = _full(shape, theta, np.float64)
    if syn:                                  # a synaptic current (snnTorch Synaptic's mapping: w_in, r give gain 1)
        tau_syn, tau = dt / (1.0 - syn), (dt / (1.0 - lam) if lam != 1.0 else np.inf)
        return nir.CubaLIF(tau_syn=_full(shape, tau_syn), tau_mem=_full(shape, tau), r=_full(shape, tau / dt),
                           w_in=_full(shape, tau_syn / dt), v_leak=_full(shape, 0.0), v_threshold=th,
                           v_reset=_full(shape, 0.0), metadata=meta)
    if lam == 1.0:
        return nir.IF(r=_full(shape, 1.0), v_threshold=th, v_reset=_full(shape, 0.0), metadata=meta)
    tau = dt / (1.0 - lam)
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, tau / dt), v_leak=_full(shape, 0.0),
                   v_threshold=th, v_reset=_full(shape, 0.0), metadata=meta)


def _glue(nir, nodes: dict, chain: list, pre: list, shape: tuple, tag: str) -> tuple:
    for j, op in enumerate(pre):
        name = f"{tag}_{op[0]}{j}"
        if op[0] == "flatten":
            nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            shape = (int(np.prod(shape)),)
        else:
            k = int(op[1]) if op[0] == "avgpool" else int(shape[1])
            if op[0] == "gap" and shape[1] != shape[2]:
                raise NirError(f"global average pooling over a {shape[1]}x{shape[2]} map has no square NIR AvgPool2d")
            nodes[name] = nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]))
            shape = (shape[0], shape[1] // k, shape[2] // k)
            if op[0] == "gap":
                chain.append(name)
                name = f"{tag}_gapflat{j}"
                nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                shape = (shape[0],)
        chain.append(name)
    return shape


def _synapse(nir, w: np.ndarray, b, lp, shape: tuple):
    b = np.zeros(w.shape[0], np.float32) if b is None else b
    if w.ndim == 4:
        return nir.Conv2d(input_shape=np.array(shape[1:]), weight=w, stride=np.array([lp.stride] * 2),
                          padding=np.array([lp.padding] * 2), dilation=np.array([1, 1]), groups=1, bias=b)
    return nir.Affine(weight=w, bias=b)


def _check_identity(w, b) -> None:
    """A count readout (train/readout.py COUNT) is the identity on the output spikes; NIR writes it as the graph
    ending in that neuron, which is that only when the readout's weights are I and its bias 0."""
    import torch

    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    if w.dim() != 2 or w.shape[0] != w.shape[1] or not torch.equal(w, eye) or (b is not None and bool((b != 0).any())):
        raise NirError("the run's count readout is not the identity on its output spikes (weights I, bias 0): a NIR "
                       "graph ending in the spiking node would be another network")


def dsr_scales(net, spec: dict, n_synapses: int) -> tuple:
    """(v_threshold per spiking layer, its reset's subtraction per layer, the factor on each synapse's
    weights) of a DSR run, (None, None, None) for any other: layer l fires at alpha V^l and subtracts V^l;
    its spikes carry V^l into synapse l+1 (V^0 = 1 for the input); a spiking output layer's identity
    readout counts spikes (factor 1), a linear readout sees V^N s^N (export/fold/dsr.py)."""
    if DSR_KEY not in spec:
        return None, None, None
    V = [float(v) for v in net.thresholds().detach().float().cpu()]
    carry = [1.0] + V[:n_synapses - 2] + [1.0 if net.spiking_output else V[-1]]
    return [float(net.dsr_alpha) * v for v in V], V, carry


def run_graph(net, spec: dict, config: dict, dt: float = DEFAULTS.dt):
    """The NIRGraph of a loaded SpikingNet (train/checkpoint.load_model) with its spec and config."""
    import nir
    import torch

    p = net.plan
    lam, theta = float(net.lam), float(net.theta)
    modes = {(lp.reset, lp.compare) for lp in p.layers[:-1]}
    if len(modes) != 1:
        raise NirError(f"the run's layers use different reset/compare modes {sorted(modes)}; saf import applies one "
                       f"to every layer")
    reset, compare = modes.pop()
    with torch.no_grad():
        ws = {"blocks": [b.effective_weight() for b in net.blocks], "fb": [f.effective_weight() for f in net.fb],
              "readout": net.readout.effective_weight()}
    to_np = lambda t: None if t is None else t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    fire, reset_by, carry = dsr_scales(net, spec, len(p.layers))
    nodes = {"input": nir.Input(input_type={"input": np.array(spec["input_shape"])})}
    chain, neuron_names = ["input"], []
    shape = tuple(spec["input_shape"])
    syn = list(net.blocks) + [net.readout]
    wts = ws["blocks"] + [ws["readout"]]
    counted = net.readout_kind is COUNT                 # spike counts: the graph ends in the output neuron
    if counted:
        _check_identity(ws["readout"], net.readout.bias)
    for i, lp in enumerate(p.layers):
        ro = lp.kind == "readout"
        if ro and counted:
            break
        tag = "readout" if ro else f"layer{i}"
        shape = _glue(nir, nodes, chain, lp.pre, shape, tag)
        w = to_np(wts[i]) if carry is None else to_np(wts[i]).astype(np.float64) * carry[i]
        nodes[f"{tag}_syn"] = _synapse(nir, w, to_np(syn[i].bias), lp, shape)
        chain.append(f"{tag}_syn")
        shape = tuple(lp.out_shape)
        if not ro:
            nodes[f"{tag}_neuron"] = _neuron(nir, lam, theta if fire is None else fire[i], shape, reset, compare, dt,
                                             None if reset_by is None else reset_by[i], lp.syn_decay)
            chain.append(f"{tag}_neuron")
            neuron_names.append(f"{tag}_neuron")
    if net.readout_kind.leak(lam) != 1.0:
        tau = dt / (1.0 - lam)
        n = int(shape[0])
        nodes["readout_li"] = nir.LI(tau=_full((n,), tau), r=_full((n,), tau / dt), v_leak=_full((n,), 0.0))
        chain.append("readout_li")
    elif net.readout_kind is FIRST_SPIKE:
        raise NirError(f"readout {net.readout_kind.name!r} has no NIR form here")
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    chain.append("output")
    edges = list(zip(chain[:-1], chain[1:]))
    for k, f in enumerate(p.feedback):
        if f.transposed:
            raise NirError(f"feedback {f.src}->{f.dst} is a transposed conv, which NIR's Conv2d cannot hold")
        w = to_np(ws["fb"][k])
        src_shape = tuple(p.layers[f.src].out_shape)
        fb = (nir.Affine(weight=w, bias=np.zeros(w.shape[0], np.float32)) if w.ndim == 2 else
              nir.Conv2d(input_shape=np.array(src_shape[1:]), weight=w, stride=np.array([1, 1]),
                         padding=np.array([f.padding] * 2), dilation=np.array([1, 1]), groups=1,
                         bias=np.zeros(w.shape[0], np.float32)))
        nodes[f"feedback{k}"] = fb
        edges += [(neuron_names[f.src], f"feedback{k}"), (f"feedback{k}", neuron_names[f.dst])]
    meta = {"format": FORMAT, "dt": dt, "T": int(spec.get("T") or config.get("T", DEFAULTS.T)), "reset": reset,
            "compare": FLAG_OF_COMPARE[compare], "encoder": config.get("encoder") or DEFAULTS.encoder,
            "dataset": config.get("dataset") or DEFAULTS.dataset, "readout": net.readout_kind.name,
            "lam": lam, "theta": theta, "method": config.get("method")}
    if DSR_KEY in spec:
        meta[DSR_KEY] = spec[DSR_KEY]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={SAF_META: json.dumps(meta)})


def write_nir(checkpoint, out, force: bool = False) -> dict:
    """Write the run's checkpoint file `checkpoint` as NIR file `out` (atomically; an existing file only
    with --force). Returns what it wrote, for the command line."""
    from pathlib import Path

    import nir

    from saf.train.checkpoint import CheckpointError, load_model
    from saf.train.methods.fp.checkpoint import is_fp_checkpoint
    from saf.core.files import atomic_write
    from saf.core.outdir import OutputError, check_file_target

    out = check_file_target(out, "--out")
    if out.exists() and not force:
        raise OutputError(f"--out {out}: exists (use --force to replace it)")
    if is_fp_checkpoint(checkpoint):            # FP's two-state neuron as CubaLIF (fp.py)
        from saf.export.nir.fp import fp_graph
        from saf.train.methods.fp.checkpoint import load_fp_checkpoint
        graph = fp_graph(*load_fp_checkpoint(checkpoint))
    else:
        try:
            net, spec, config = load_model(checkpoint)
        except CheckpointError:
            raise
        graph = run_graph(net, spec, config)
    atomic_write(Path(out), lambda tmp: nir.write(tmp, graph))
    meta = json.loads(graph.metadata[SAF_META])
    return {"out": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges), **meta}
