"""lava backend (simulated Loihi): the integer network on Lava's OWN Processes and bit-accurate models.

Per spiking layer:  stock Dense (lava.proc.dense) or stock Conv (lava.proc.conv), fixed point
                    -> stock LIFReset (lava.proc.lif) run by Lava's PyLifResetModelBitAcc: as it is for a
                       layer whose modes are Lava's own (reset zero, compare >), else with only its compare
                       and/or reset overridden to the layer's (deploy/lava/procs/stock_lif.py MODELS;
                       PySoftResetLifBitAcc for the default >= / subtract): du = Layer.du (4095: no carry),
                       dv = D, bias = bias_mant << bias_exp, vth << 6, u wrapping at 24 bits.
                    The stock Conv runs PyConvModelFixedIm2col (deploy/lava/procs/stock_conv.py): Lava's
                       fixed-point Conv model with its scipy loop replaced by one matrix product that
                       gives the same integers (tests/test_lava_stock.py compares it with Lava's).
Input:              stock io.source.RingBuffer sending x_q as graded spikes into the first
                    Dense/Conv (num_message_bits = the input's bits).
Readout:            stock Dense -> the toolchain's own Integrator (deploy/lava/procs/readout.py), leaking
                    with the readout's decay D_r and shift F_r exactly as export/ir.py says (Lava has no
                    stock non-spiking integrator that reports R[T] per sample).
Observation:        own SpikeTap per layer (reads s_out, ships packed spikes to the host).
Per-sample reset:   LIFReset's own reset_interval = T, reset_offset = the layer's offset.

Sum pooling (Layer.in_pool): Lava has no stock process that sends a k x k count as a graded spike,
so this backend runs the folded form of such a layer (export/sum_pool.unpool_graph: its weight
replicated over each k x k block, stride and padding times k), which computes the same integers.

Timing is deploy/lava/graph.py's schedule with period 1 (every Dense/Conv delivers one step late;
layer l runs logical step t of sample n at Lava step l + 2 + n*T + t). Refused, one line each
(stock_refusal; the registry adds "use lava-own"): feedback edges (they need the own backend's phased
schedule), F != 6 (F > 6 needs a programmable Loihi 2 microcode neuron), initial potentials, the reset
subtract-undecayed (a subtraction owed across the decay: no stock state holds it), a conv
after a dense layer, a conv layer with two synapse words per weight (the stock Conv ignores weight_exp; dense
two-word layers run as stock Dense Processes for each word, the high word's with weight_exp + 7:
stock_encode.encode_words), thresholds beyond 17 bits, and weights/biases the stock formats cannot hold
exactly (stock_encode.py). Where |W s_in| << 6 can exceed 2^23 - 1 the u register would wrap, as
Lava's model (and Loihi) does: the registry's `lava` record refuses such a network (its
current_register is in verify's certificate) and run_lava_stock, called directly, shows the wrap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from saf.export.ir import Graph
from saf.export.fold.sum_pool import unpool_graph

import saf.deploy.lava.stock_encode as enc
from saf.deploy.lava.graph import make_schedule, validate_graph, validate_input
from saf.deploy.lava.procs.readout import Integrator
from saf.deploy.lava.procs.stock_conv import REPLACED, PyConvModelFixedIm2col
from saf.deploy.lava.procs.stock_lif import MODELS, OVERRIDDEN, PySoftResetLifBitAcc
from saf.deploy.lava.procs.tap import SpikeTap
from saf.deploy.lava.model_listing import describe_part
from saf.export.result import BackendResult
from saf.core.errors import SafError

VTH_MAX = (1 << 17) - 1            # lava LIF: vth is an unsigned 17-bit mantissa
MAX_BUFFER = 1 << 25               # input RingBuffer elements (N * T * n_in) held in memory


class StockModelError(SafError, ValueError):
    """The graph cannot run on Lava's stock models as it is (one line naming the layer)."""


def stock_problems(graph: Graph) -> list:
    """One line per reason the stock neuron/synapse models cannot run `graph` exactly as the IR says."""
    out = []
    if graph.feedback:
        out.append(f"{len(graph.feedback)} feedback edge(s): the stock LIF updates every Lava step and "
                   f"cannot hold the phased feedback schedule")
    if not 0 <= int(graph.decay) <= 4095:
        out.append(f"decay {graph.decay} does not fit the stock model's 12-bit dv (0..4095)")
    for l in graph.spiking_layers:
        F = int(l.frac_bits)
        if F > enc.ACT_SHIFT:
            out.append(f"layer {l.name}: F = {F} > 6 fractional bits (lam = 2^-k with k(T-1) > 6) needs a "
                       f"programmable (Loihi 2 microcode) neuron; the stock LIF's shifts are fixed at 6")
        elif F < enc.ACT_SHIFT:
            out.append(f"layer {l.name}: F = {F} but the stock LIF shifts input and threshold by exactly 6")
        if int(l.v0):
            out.append(f"layer {l.name}: initial potential v0 = {l.v0} (alpha firing): the stock LIF "
                       f"starts every sample at v = 0")
        if l.has_initial_current:
            out.append(f"layer {l.name}: initial current u0 (a bias inside the synaptic current): the stock LIFReset "
                       f"resets u to 0 every sample")
        if (l.compare, l.reset) not in MODELS:
            out.append(f"layer {l.name}: reset {l.reset!r} subtracts TH after the next decay; the stock LIF "
                       f"keeps no state for it (it resets v to 0, or by subtraction when overridden)")
        if not 0 < int(l.threshold) <= VTH_MAX:
            out.append(f"layer {l.name}: threshold {l.threshold} outside the stock vth range 1..{VTH_MAX}")
    dense_seen = False
    for l in graph.layers:
        if l.kind == "conv" and int(l.weight_words) > 1:
            out.append(f"layer {l.name}: {l.weight_words} synapse words per weight on a conv layer: Lava's stock Conv "
                       f"ignores weight_exp, so its high word cannot be shifted")
        if l.kind == "conv" and dense_seen:
            out.append(f"layer {l.name}: a conv after a dense layer is not mapped onto the stock Conv")
        dense_seen = dense_seen or l.kind != "conv"
    return out


def stock_refusal(graph: Graph) -> str:
    """The first reason (one line) Lava's stock models cannot run `graph` exactly, "" when they can:
    stock_problems of its folded form, then every weight and bias through the stock encodings."""
    g = unpool_graph(graph)
    problems = stock_problems(g)
    if problems:
        return problems[0]
    try:
        for l in g.layers:
            if l.kind != "conv":
                enc.encode_words(l.weight, l.name, l.weight_words)
            if l.spiking:
                enc.encode_bias(l.full_bias(), l.name)
    except enc.EncodingError as e:
        return str(e)
    return ""


def check_stock(graph: Graph) -> None:
    """Raise (one line) unless Lava's stock models can run `graph` exactly as the IR says."""
    validate_graph(graph)
    problems = stock_problems(graph)
    if problems:
        raise StockModelError(problems[0])


@dataclass
class StockNetwork:
    source: object
    layers: list = field(default_factory=list)    # per IR layer: dict(name, synapses, neuron, tap, encoding)
    readout: Integrator = None
    layouts: list = field(default_factory=list)   # per spiking layer: (C, H, W) if WHC in Lava, else None

    @property
    def processes(self) -> list:
        ps = [self.source]
        for d in self.layers:
            ps += d["synapses"] + [p for p in (d["neuron"], d["tap"]) if p is not None]
        return ps


def _synapses(layer, pre_port, pre_layout, graded_bits: int, name: str):
    """(list of stock Dense/Conv Processes fed by pre_port, their output layout, encodings)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense

    if layer.kind == "conv":
        if pre_layout is None:
            raise StockModelError(f"layer {name}: a conv after a dense layer is not mapped onto the stock Conv")
        conv = Conv(weight=enc.conv_weights(layer.weight), input_shape=enc.whc_shape(layer.in_shape),
                    padding=(int(layer.padding),) * 2, stride=(int(layer.stride),) * 2,
                    num_message_bits=graded_bits, name=f"{name}.conv")
        pre_port.connect(conv.s_in)
        return [conv], tuple(layer.out_shape), "stock Conv (weights as given; Conv ignores weight_exp)"
    w = np.asarray(layer.weight, dtype=np.int64)
    if pre_layout is not None:                      # previous population is (W, H, C) in Lava
        w = enc.chw_to_whc(w, pre_layout).reshape(w.shape[0], -1)
        pre_port = pre_port.flatten()
    codes = enc.encode_words(w, name, layer.weight_words)
    procs = []
    for c in codes:
        d = Dense(weights=c.weights, sign_mode=c.sign_mode, num_weight_bits=c.num_weight_bits,
                  weight_exp=c.weight_exp, num_message_bits=graded_bits,
                  name=f"{name}.dense.{c.part.replace(' ', '-')}")
        pre_port.connect(d.s_in)
        procs.append(d)
    how = ", ".join(f"{c.part}: {c.sign_mode.name} num_weight_bits={c.num_weight_bits} "
                    f"weight_exp={c.weight_exp}" for c in codes)
    return procs, None, how


def build_stock_network(graph: Graph, xq: np.ndarray, probe_buffer: int = 64,
                        record_spikes: bool = True) -> tuple:
    """(StockNetwork, Schedule) streaming xq [N, (T,) *input_shape] through Lava's stock Processes."""
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset

    graph = unpool_graph(graph)

    check_stock(graph)
    data = validate_input(graph, xq)
    sched = make_schedule(graph, data.shape[0])
    T, N = sched.T, sched.n_samples
    first = graph.layers[0]
    layout = tuple(graph.input_shape) if first.kind == "conv" else None
    steps = sched.total_steps
    if data.shape[2] * steps > MAX_BUFFER:
        raise StockModelError(f"{N} samples x {T} steps x {data.shape[2]} inputs exceed the input buffer "
                              f"({MAX_BUFFER:,} values); run_lava_stock splits them")
    buf = np.zeros((steps, data.shape[2]), dtype=np.int32)
    buf[:N * T] = data.reshape(N * T, -1)                  # column k is sent at Lava step k + 1 (frame per step)
    buf = enc.chw_to_whc(buf, layout) if layout else buf
    source = RingBuffer(data=np.moveaxis(buf, 0, -1).copy())
    net = StockNetwork(source=source)
    port, graded = source.s_out, max(1, int(graph.input_bits))
    for i, l in enumerate(graph.layers):
        syns, layout, how = _synapses(l, port, layout, graded, l.name)
        graded = 0
        shape = enc.whc_shape(l.out_shape) if layout else (l.n_out,)
        bias = l.full_bias()
        if layout:
            bias = enc.chw_to_whc(bias, layout)
        if not l.spiking:
            nrn = Integrator(n=l.n_out, bias=l.full_bias(), period=1, offset=sched.offsets[i], T=T,
                             n_samples=N, probe_buffer=probe_buffer, decay=l.decay, shift=l.readout_shift,
                             name=l.name, first_spike=l.first_spike)
            for s in syns:
                s.a_out.connect(nrn.a_in)
            net.readout = nrn
            net.layers.append({"name": l.name, "synapses": syns, "neuron": nrn, "tap": None, "encoding": how})
            break
        mant, bexp = enc.encode_bias(bias.reshape(-1), l.name)
        nrn = LIFReset(shape=shape, du=int(l.du), dv=int(graph.decay), vth=int(l.threshold),
                       bias_mant=mant.reshape(shape), bias_exp=bexp.reshape(shape),
                       reset_interval=T, reset_offset=sched.offsets[i] % T, name=l.name)
        for s in syns:
            s.a_out.connect(nrn.a_in)
        tap = None
        if record_spikes:
            tap = SpikeTap(shape=shape, offset=sched.offsets[i], T=T, n_samples=N, probe_buffer=probe_buffer,
                           name=f"{l.name}.tap")
            nrn.s_out.connect(tap.s_in)
        model, overrides = MODELS[(l.compare, l.reset)]
        net.layers.append({"name": l.name, "synapses": syns, "neuron": nrn, "tap": tap, "encoding": how,
                           "model": model, "overrides": overrides})
        net.layouts.append(layout)
        port = nrn.s_out
    return net, sched


def describe_models(net: StockNetwork) -> list:
    """Per layer, the Process and ProcessModel classes that ran (call after compilation)."""
    out = [{"layer": "input", "parts": [describe_part("graded input", net.source)]}]
    for d in net.layers:
        parts = [describe_part("synapse", s, d["encoding"]) for s in d["synapses"]]
        parts.append(describe_part("readout" if d["neuron"] is net.readout else "neuron", d["neuron"]))
        if d["tap"] is not None:
            parts.append(describe_part("spike probe (observer)", d["tap"]))
        out.append({"layer": d["name"], "parts": parts})
    return out


def samples_per_network(graph: Graph) -> int:
    """How many samples one compiled network streams: its input RingBuffer holds every step's input."""
    n_in, L = int(np.prod(graph.input_shape)), len(graph.layers)
    per = (MAX_BUFFER // max(1, n_in) - L - 1) // int(graph.T)
    if per < 1:
        raise StockModelError(f"one sample ({n_in} inputs x {graph.T} steps) exceeds the input buffer "
                              f"({MAX_BUFFER:,} values)")
    return per


def run_lava_stock(graph: Graph, xq: np.ndarray, record_spikes: bool = True, progress: bool = False,
                   chunk_samples: int = 32) -> BackendResult:
    """Run N samples through Lava's stock Processes; same outputs as deploy/lava/backend.run_lava (lava-own).
    Samples stream through one compiled network, or several in turn when the input buffer of one
    would exceed MAX_BUFFER values."""
    t_start = time.perf_counter()
    xq = np.asarray(xq)
    graph = unpool_graph(graph)            # stock processes run the folded form (module docstring)
    check_stock(graph)
    validate_input(graph, xq)
    per = samples_per_network(graph)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(xq), desc="lava", unit="sample")
    runs = []
    try:
        for a in range(0, len(xq), per):
            runs.append(_run_network(graph, xq[a:a + per], record_spikes, max(1, int(chunk_samples)), bar))
    finally:
        if bar is not None:
            bar.close()
    if not runs:
        raise StockModelError("no samples to run")
    run_s = sum(r["run_s"] for r in runs)
    steps = sum(r["steps"] for r in runs)
    spikes = None
    if record_spikes:
        spikes = [np.concatenate([r["spikes"][i] for r in runs]) for i in range(len(graph.spiking_layers))]
    info = {"lava_steps": steps, "steps_per_s": steps / run_s if run_s > 0 else float("inf"),
            "ms_per_sample": 1000.0 * run_s / len(xq), "build_compile_s": sum(r["compile_s"] for r in runs),
            "networks": len(runs), "offsets": runs[0]["offsets"], "processes": runs[0]["processes"],
            "tag": "fixed_pt", "neuron_overrides": _overrides(graph),
            "conv_replaced": list(REPLACED), "models": runs[0]["models"],
            "input_injection": "stock io.source.RingBuffer: x_q as graded spikes into the first stock synapse"}
    return BackendResult(backend="lava", readout=np.concatenate([r["readout"] for r in runs]),
                         spikes=spikes, seconds=time.perf_counter() - t_start, info=info)


def _run_network(graph: Graph, xq: np.ndarray, record_spikes: bool, chunk: int, bar) -> dict:
    """Build, compile and run one network on xq; drains the probes every `chunk` samples."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIFReset

    t_start = time.perf_counter()
    net, sched = build_stock_network(graph, xq, probe_buffer=chunk + 2, record_spikes=record_spikes)
    T, N = sched.T, sched.n_samples
    spiking = graph.spiking_layers
    readout = np.zeros((N, graph.readout.n_out), dtype=np.int64)
    spikes = [np.zeros((N, T, l.n_out), dtype=bool) for l in spiking] if record_spikes else None
    ports = [(net.readout.probe, sched.offsets[-1], None)]
    if record_spikes:
        ports += [(d["tap"].probe, sched.offsets[i], i) for i, d in enumerate(net.layers[:-1])]
    got = [0] * len(ports)
    # LIFReset's model for the default modes by class; any other layer's by its own Process instance (Lava's
    # compiler looks instances up first), Lava's unmodified model where the layer's modes are Lava's
    per_layer = {d["neuron"]: d["model"] for d in net.layers[:-1] if d["overrides"] != OVERRIDDEN}
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={LIFReset: PySoftResetLifBitAcc,
                                                                        Conv: PyConvModelFixedIm2col, **per_layer})
    run_s, done, total = 0.0, 0, sched.total_steps
    try:
        net.source.create_runtime(run_cfg=cfg)
        t_compiled = time.perf_counter()
        while done < total:
            k = min(chunk * T, total - done)
            t0 = time.perf_counter()
            net.source.run(condition=RunSteps(num_steps=k), run_cfg=cfg)
            run_s += time.perf_counter() - t0
            done += k
            before = got[0]
            for j, (port, offset, li) in enumerate(ports):
                pipe = port.external_pipe_csp_recv_port
                while got[j] < sched.samples_done(offset, done):
                    msg = pipe.recv()
                    if li is None:
                        readout[got[j]] = np.asarray(msg).astype(np.int64)
                    else:
                        spikes[li][got[j]] = _unpack(msg, T, spiking[li], net.layouts[li])
                    got[j] += 1
            if bar is not None:
                bar.update(got[0] - before)
        models = describe_models(net)
    finally:
        net.source.stop()
    return {"readout": readout, "spikes": spikes, "run_s": run_s, "compile_s": t_compiled - t_start,
            "steps": total, "offsets": list(sched.offsets), "processes": len(net.processes), "models": models}


def _overrides(graph: Graph):
    """The LIF methods overridden: one list when every layer has the default modes (as before modes), else
    per layer ([] where Lava's model runs as it is)."""
    per = {l.name: list(MODELS[(l.compare, l.reset)][1]) for l in graph.spiking_layers}
    return list(OVERRIDDEN) if all(v == list(OVERRIDDEN) for v in per.values()) else per


def _unpack(msg, T: int, layer, layout) -> np.ndarray:
    """A SpikeTap message -> bool [T, n_out] in the IR's flat (C, H, W) order."""
    n = layer.n_out
    s = np.unpackbits(np.asarray(msg, dtype=np.uint8))[:T * n].astype(bool).reshape(T, n)
    return enc.whc_to_chw(s, layout) if layout else s
