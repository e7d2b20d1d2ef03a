"""Build the Lava process graph of an export.ir.Graph (one compiled graph streams many samples).

Structure (mirrors a Loihi deployment): GradedSource -> [DenseSyn|ConvSyn -> SoftResetLIF] per
spiking layer -> DenseSyn -> Integrator (readout), plus one synapse Process per Feedback edge from
the source layer's spikes into the destination layer's `fb_in` port.

A sum-pooled layer (Layer.in_pool = k) gets a SumPool stage between the previous layer's spikes
and its synapse: k x k block counts sent as graded spikes (a Loihi 2 sum-neuron stage), one more
step of delay.

Schedule. Every synapse delivers one Lava step late (Loihi's timing), so layer l (0-based, the
readout being the last) runs with offset o_l = l + 2 (the source sends on step 1), plus one for each
sum-pool stage up to layer l (layer_offsets): logical step t
(0-based) of sample n happens at Lava step  o_l + P * (n*T + t). With P = 1 this is plain
pipelining. A Feedback(src=p, dst=q) edge sends s_p[t-1] at o_p + P*(n*T + t-1) and its synapse
delivers it one step later, which must land in q's window (o_q + P*(n*T + t-1), o_q + P*(n*T + t)]:
the right end needs P >= o_p - o_q + 1, the left end holds because p >= q. So
P = max(1, max over feedback of (o_p - o_q + 1)); the neuron accumulates feedback over its window and
zeroes it at t = 0 (s_src[0] = 0 for every sample). Layer l resets its state at t = 0, i.e. every
P*T steps at its own offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from saf.export.ir import Graph
from saf.hw_targets.words import WORD_SHIFT, split_words


def let_lava_choose_fork() -> None:
    """Lava's message infrastructure calls multiprocessing.set_start_method('fork') at import and
    fails with "context has already been set" if anything before it (e.g. tqdm's multiprocessing
    lock) fixed the start method. Clear it so Lava's import can set the method it needs."""
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules \
            and mp.get_start_method(allow_none=True) is not None:
        mp.set_start_method(None, force=True)


let_lava_choose_fork()
from saf.deploy.lava.procs import ConvSyn, DenseSyn, GradedSource, Integrator, SoftResetLIF, SumPool  # noqa: E402

WEIGHT_MAX = 255          # Loihi: 8-bit magnitude + sign


@dataclass
class Schedule:
    T: int
    period: int                # P: Lava steps per logical step
    n_samples: int
    offsets: list              # Lava step of logical step 0 of sample 0, per IR layer (readout last)

    @property
    def total_steps(self) -> int:
        """Lava steps until the readout has finished the last sample."""
        return self.offsets[-1] + self.period * (self.n_samples * self.T - 1)

    def samples_done(self, offset: int, steps: int) -> int:
        """How many samples a layer with `offset` has completed after `steps` Lava steps."""
        last = steps - offset - self.period * (self.T - 1)
        if last < 0:
            return 0
        return min(self.n_samples, last // (self.period * self.T) + 1)


def layer_offsets(graph: Graph) -> list:
    """o_l = l + 2 plus one step for every sum-pool stage (Layer.in_pool > 1) up to and including l's."""
    out, extra = [], 0
    for i, l in enumerate(graph.layers):
        extra += int(int(l.in_pool) > 1)
        out.append(i + 2 + extra)
    return out


def make_schedule(graph: Graph, n_samples: int) -> Schedule:
    offsets = layer_offsets(graph)
    period = max([1] + [offsets[fb.src] - offsets[fb.dst] + 1 for fb in graph.feedback])
    return Schedule(T=int(graph.T), period=period, n_samples=int(n_samples), offsets=offsets)


@dataclass
class LavaNetwork:
    """Handles on the built Processes; run any of them to run the whole network."""
    graph: Graph
    schedule: Schedule
    source: GradedSource
    synapses: list             # per IR layer (readout last): its synapse Processes, one per synapse word
    neurons: list              # SoftResetLIF per spiking layer
    readout: Integrator
    feedback: list = field(default_factory=list)   # per Feedback edge: its synapse Processes (one per word)
    record_spikes: bool = True
    pools: list = field(default_factory=list)      # SumPool stage per sum-pooled layer (Layer.in_pool)

    @property
    def processes(self) -> list:
        return [self.source, *(p for ps in self.synapses + self.feedback for p in ps), *self.neurons, self.readout,
                *self.pools]


def _check_weights(name: str, w: np.ndarray, words: int = 1) -> list:
    """[(word, weight_exp)] of one connection: the weights themselves (one synapse word), or the high word
    (weight_exp WORD_SHIFT) and the low word of a two-word layer (hw_targets/words.py), each within Loihi's
    8-bit range: the two synapses the chip would hold, into the same neurons."""
    w = np.asarray(w)
    if w.dtype.kind not in "iu":
        raise ValueError(f"{name}: weights must be integers, got dtype {w.dtype}")
    if int(words) == 2:
        try:
            hi, lo = split_words(w)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        parts = [(hi, WORD_SHIFT), (lo, 0)]
    else:
        parts = [(w.astype(np.int64), 0)]
    for p, _ in parts:
        if p.size and int(np.abs(p).max()) > WEIGHT_MAX:
            raise ValueError(f"{name}: weight {int(np.abs(p).max())} outside Loihi's range "
                             f"[-{WEIGHT_MAX}, {WEIGHT_MAX}]" + (" (one synapse word)" if len(parts) == 1 else ""))
    return parts


def validate_graph(graph: Graph) -> None:
    """Raise (one line, naming the layer) for graphs the Lava backend cannot run: a malformed graph (IRError,
    Graph.validate), then weights beyond what Loihi's synapses hold (ValueError)."""
    graph.validate()
    for l in graph.layers:
        _check_weights(f"layer {l.name}", l.weight, l.weight_words)
    for fb in graph.feedback:
        _check_weights(f"feedback {fb.src}->{fb.dst}", fb.weight, graph.layers[fb.dst].weight_words)


def validate_input(graph: Graph, xq: np.ndarray) -> np.ndarray:
    """xq [N, *input_shape] (constant) or [N, T, *input_shape] (frames) -> int64 frames [N, T, n_in]."""
    xq = np.asarray(xq)
    frames = graph.input_frames(xq)
    if xq.dtype.kind not in "iu":
        raise ValueError(f"xq must hold quantized integers (graph.quantize_input), got {xq.dtype}")
    if graph.input_signed:
        lo, hi = -(1 << (graph.input_bits - 1)), (1 << (graph.input_bits - 1)) - 1
    else:
        lo, hi = 0, (1 << graph.input_bits) - 1
    if xq.size and (xq.min() < lo or xq.max() > hi):
        raise ValueError(f"xq values [{xq.min()}, {xq.max()}] outside the graph's "
                         f"{graph.input_bits}-bit input range [{lo}, {hi}]")
    return frames


def _synapses(kind, weight, words, in_shape, stride, padding, name) -> list:
    """One synapse Process per synapse word (_check_weights), all fed by the same spikes."""
    parts = _check_weights(name, weight, words)
    tag = (lambda e: ".hi" if e else ".lo") if len(parts) > 1 else (lambda e: "")
    if kind == "conv":
        return [ConvSyn(weights=w, in_shape=tuple(in_shape), stride=stride, padding=padding,
                        name=name + tag(e), weight_exp=e) for w, e in parts]
    return [DenseSyn(weights=w, name=name + tag(e), weight_exp=e) for w, e in parts]


def build_lava_network(graph: Graph, xq: np.ndarray = None, record_spikes: bool = True,
                       probe_buffer: int = 64) -> LavaNetwork:
    """Processes and connections for `graph` streaming the samples xq [N, (T,) *input_shape] (one zero
    sample if None). probe_buffer: samples the host may leave unread in each probe pipe."""
    validate_graph(graph)
    if xq is None:
        xq = np.zeros((1, *graph.input_shape), dtype=np.int64)
    data = validate_input(graph, xq)
    sched = make_schedule(graph, data.shape[0])
    P, T, N = sched.period, sched.T, sched.n_samples
    source = GradedSource(data=data.reshape(N * T, -1), period=P, T=T, name="input")
    pre = source.s_out
    synapses, neurons, pools = [], [], []
    for i, l in enumerate(graph.layers):
        syns = _synapses(l.kind if l.kind != "readout" else "dense", l.weight, l.weight_words, l.syn_in_shape,
                         l.stride, l.padding, f"{l.name}.syn")
        if int(l.in_pool) > 1:           # the sum-pool stage: graded counts, one more step of delay
            pool = SumPool(in_shape=tuple(l.in_shape), k=int(l.in_pool), name=f"{l.name}.pool")
            pre.connect(pool.s_in)
            pre = pool.a_out
            pools.append(pool)
        for syn in syns:
            pre.connect(syn.s_in)
        bias = l.full_bias()
        if l.spiking:
            nrn = SoftResetLIF(n=l.n_out, bias=bias, threshold=l.threshold, frac_bits=l.frac_bits,
                               decay=graph.decay, period=P, offset=sched.offsets[i], T=T,
                               n_samples=N, record=record_spikes, probe_buffer=probe_buffer,
                               name=l.name, v0=int(l.v0), du=int(l.du), compare=l.compare, reset=l.reset,
                               u0=l.full_initial_current() if l.has_initial_current else None)
            neurons.append(nrn)
            pre = nrn.s_out
        else:
            nrn = Integrator(n=l.n_out, bias=bias, period=P, offset=sched.offsets[i], T=T,
                             n_samples=N, probe_buffer=probe_buffer, decay=l.decay,
                             shift=l.readout_shift, name=l.name, first_spike=l.first_spike)
        for syn in syns:                 # two words: Lava sums both connections into a_in
            syn.a_out.connect(nrn.a_in)
        synapses.append(syns)
    fbs = []
    for fb in graph.feedback:
        src = graph.layers[fb.src]
        syns = _synapses(fb.kind, fb.weight, graph.layers[fb.dst].weight_words, src.out_shape, fb.stride,
                         fb.padding, f"feedback{fb.src}->{fb.dst}")
        for syn in syns:
            neurons[fb.src].s_out.connect(syn.s_in)
            syn.a_out.connect(neurons[fb.dst].fb_in)
        fbs.append(syns)
    return LavaNetwork(graph=graph, schedule=sched, source=source, synapses=synapses,
                       neurons=neurons, readout=nrn, feedback=fbs, record_spikes=record_spikes, pools=pools)


def compile_lava_network(graph: Graph, tag: str = "fixed_pt"):
    """Build (one zero sample) and compile the graph with Lava's compiler; returns the Executable.
    Raises if Lava cannot compile it (used by `saf export` to state that the Lava graph compiles)."""
    from lava.magma.core.run_configs import Loihi2SimCfg
    net = build_lava_network(graph, None, record_spikes=False)
    return net.source.compile(Loihi2SimCfg(select_tag=tag))
