"""Lava backend: run an export.ir.Graph on Lava's Loihi simulator, bit-exact in fixed point.

One network is built and compiled per call; all samples stream through one long run (executed in
chunks so the host drains the probes and can show progress). Layer 1's input current W1 x_q is not
computed on the host: x_q is injected as graded spikes (integer payloads) into a synapse Process,
as on Loihi 2, so the first layer's weights run in Lava like every other layer's. Spikes and
readouts leave through per-layer probe pipes (one packed message per sample), never Var.get.
See deploy/lava/graph.py for the schedule (delays, feedback, resets).
"""
from __future__ import annotations

import time

import numpy as np

from saf.export.ir import Graph

from saf.deploy.lava.graph import build_lava_network
from saf.deploy.lava.model_listing import describe_part
from saf.export.result import BackendResult
from saf.core.counts import check_count

TAGS = ("fixed_pt", "floating_pt")


class _Probes:
    """Host side of the probe pipes: blocking reads of exactly the messages already sent."""

    def __init__(self, net):
        s, T = net.schedule, net.schedule.T
        self.sched = s
        self.readout = np.zeros((s.n_samples, net.readout.probe.shape[0]), dtype=np.int64)
        self.spikes = None
        self.ports = [(net.readout.probe, s.offsets[-1], None)]
        if net.record_spikes:
            self.spikes = []
            for i, nrn in enumerate(net.neurons):
                self.spikes.append(np.zeros((s.n_samples, T, net.graph.layers[i].n_out), bool))
                self.ports.append((nrn.probe, s.offsets[i], i))
        self.got = [0] * len(self.ports)

    def drain(self, steps: int) -> int:
        """Read every sample completed by `steps` Lava steps; returns readouts received so far."""
        for j, (port, offset, layer) in enumerate(self.ports):
            pipe = port.external_pipe_csp_recv_port
            while self.got[j] < self.sched.samples_done(offset, steps):
                msg = pipe.recv()
                n = self.got[j]
                if layer is None:
                    self.readout[n] = np.rint(msg).astype(np.int64)
                else:
                    dst = self.spikes[layer][n]
                    dst[:] = np.unpackbits(msg)[:dst.size].reshape(dst.shape).astype(bool)
                self.got[j] += 1
        return self.got[0]


def _synapse_parts(syns: list) -> list:
    """One part per synapse Process: "synapse", or "synapse high word" / "low word" of a two-word layer."""
    if len(syns) == 1:
        return [describe_part("synapse", syns[0])]
    return [describe_part(f"synapse {w} word", s) for w, s in zip(("high", "low"), syns)]


def describe_models(net) -> list:
    """Per layer, the Process and ProcessModel classes that ran (all the toolchain's own here)."""
    out = [{"layer": "input", "parts": [describe_part("graded input", net.source)]}]
    for i, l in enumerate(net.graph.layers):
        nrn = net.neurons[i] if l.spiking else net.readout
        out.append({"layer": l.name, "parts": [*_synapse_parts(net.synapses[i]),
                                               describe_part("neuron" if l.spiking else "readout", nrn)]})
    for fb, syns in zip(net.graph.feedback, net.feedback):
        out.append({"layer": f"feedback {fb.src}->{fb.dst}", "parts": _synapse_parts(syns)})
    return out


def run_lava(graph: Graph, xq: np.ndarray, record_spikes: bool = True, progress: bool = False,
             tag: str = "fixed_pt", chunk_samples: int = 32) -> BackendResult:
    """Run N samples xq (int64 [N, *graph.input_shape]) through the graph on Lava.

    Returns BackendResult(readout int64 [N, classes], spikes: bool [N, T, n_out] per spiking layer
    (None unless record_spikes), info: Lava steps run, steps/s, schedule). tag: "fixed_pt"
    (bit-exact integer semantics of export/ir.py) or "floating_pt" (float64; equal to fixed_pt
    where the integer decay is exact, e.g. dyadic lam with enough fractional bits).
    """
    if tag not in TAGS:
        raise ValueError(f"tag must be one of {TAGS}, got {tag!r}")
    check_count("chunk_samples", int(chunk_samples))
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    t_start = time.perf_counter()
    net = build_lava_network(graph, xq, record_spikes=record_spikes,
                             probe_buffer=int(chunk_samples) + 2)
    sched = net.schedule
    probes = _Probes(net)
    total = sched.total_steps
    chunk_steps = int(chunk_samples) * sched.period * sched.T
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sched.n_samples, desc="lava", unit="sample")
    cfg = Loihi2SimCfg(select_tag=tag)
    run_s = 0.0
    try:
        net.source.create_runtime(run_cfg=cfg)
        t_compiled = time.perf_counter()
        done = 0
        while done < total:
            k = min(chunk_steps, total - done)
            t0 = time.perf_counter()
            net.source.run(condition=RunSteps(num_steps=k), run_cfg=cfg)
            run_s += time.perf_counter() - t0
            done += k
            before = probes.got[0]
            after = probes.drain(done)
            if bar is not None:
                bar.update(after - before)
        models = describe_models(net)
    finally:
        if bar is not None:
            bar.close()
        net.source.stop()
    seconds = time.perf_counter() - t_start
    info = {
        "lava_steps": total,
        "steps_per_s": total / run_s if run_s > 0 else float("inf"),
        "ms_per_sample": 1000.0 * run_s / sched.n_samples,
        "build_compile_s": t_compiled - t_start,
        "period": sched.period,
        "offsets": list(sched.offsets),
        "processes": len(net.processes),
        "tag": tag,
        "input_injection": "graded spikes (x_q payloads) into the first synapse Process",
        "models": models,
    }
    return BackendResult(backend=f"lava-{tag}", readout=probes.readout, spikes=probes.spikes,
                         seconds=seconds, info=info)
