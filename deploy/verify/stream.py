"""Verify in chunks (`saf verify --chunk N`): every backend runs on one chunk of inputs, every pair is
compared on it, and only what the report needs is kept (per backend: readouts, spike counts per layer,
per-sample spike hashes when golden outputs are checked; per pair: mismatch counts and the first
mismatch with its global sample index), then the chunk's spike trains are dropped. So memory holds
about one chunk of spike arrays (plus N x classes readouts) whatever the number of inputs.
Subset backends (Lava: the first --lava-limit samples) run only on the chunks covering their samples."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from saf.deploy.backends.registry import Bundle, check_runs, run_checked
from saf.core.counts import check_count
from saf.deploy.backends.spec import BackendError
from saf.deploy.verify.compare import spike_hashes
from saf.deploy.verify.pairs import POTENTIAL_BUDGET, compare_chunk, finish_pair, merge_pair

DEFAULT_CHUNK = 1000           # samples per chunk: MNIST conv, T = 6: ~60 MB of spike trains per backend


@dataclass
class Streamed:
    """What verify keeps of one backend's run over every chunk (its spike trains are not kept)."""
    backend: str
    readouts: list = field(default_factory=list)        # one int64 [n, classes] array per chunk
    spike_counts: Optional[list] = None                 # per layer: spikes, and (sample, step, neuron) cells
    cells: Optional[list] = None
    hashes: Optional[list] = None                       # per sample (compare.spike_hashes), with golden only
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def readout(self) -> np.ndarray:
        return np.concatenate(self.readouts) if len(self.readouts) != 1 else self.readouts[0]

    @property
    def predictions(self) -> np.ndarray:
        return self.readout.argmax(axis=1)

    def rates(self) -> list:
        """Spikes per neuron per time step, per layer (equal to compare.firing_rates on the whole run)."""
        return [c / n if n else 0.0 for c, n in zip(self.spike_counts, self.cells)]

    def add(self, r, seconds: float, hashes: bool) -> None:
        if not self.readouts:
            self.info = dict(r.info)
            self.spike_counts, self.cells = [0] * len(r.spikes), [0] * len(r.spikes)
            self.hashes = [] if hashes else None
        self.readouts.append(np.asarray(r.readout))
        for i, s in enumerate(r.spikes):
            self.spike_counts[i] += int(np.count_nonzero(s))
            self.cells[i] += int(s.size)
        if hashes:
            self.hashes += spike_hashes(r)
        self.seconds += seconds


def check_chunk(chunk) -> int:
    if chunk is None:
        return DEFAULT_CHUNK
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)):
        raise BackendError(f"--chunk must be an integer >= 1, got {chunk!r}")
    check_count("--chunk", chunk, 1, BackendError)
    return int(chunk)


def _run(spec, bundle: Bundle, x: np.ndarray, start: int, k: int, progress: bool):
    """One backend on one chunk; potentials on the chunk's samples below k (the whole run's budget)."""
    if k >= start + len(x):
        return run_checked(spec, bundle, x, record_spikes=True, record_potentials=True, progress=progress)
    r = run_checked(spec, bundle, x, record_spikes=True, record_potentials=False, progress=progress)
    if start < k:
        r.potentials = run_checked(spec, bundle, x[:k - start], record_spikes=False,
                                   record_potentials=True).potentials
    return r


def run_compare(bundle: Bundle, xq: np.ndarray, specs: list, o, exact: bool, hashes: bool = False) -> tuple:
    """({backend: Streamed}, pairs, failures): every backend and every pair of integer backends over xq,
    o.chunk samples at a time (o: verify's options.VerifyOptions: lava_limit, mismatch_bound, chunk,
    progress). The pairs and failures are those pairs.compare_all gives on whole runs."""
    lava_limit, mismatch_bound, chunk, progress = o.lava_limit, o.mismatch_bound, o.chunk, o.progress
    g = bundle.graph
    check_runs(specs, g)                            # refusals once, before the first chunk runs
    per_sample = g.T * sum(l.n_out for l in g.spiking_layers)
    ns, ks = {}, {}
    for spec in specs:
        ns[spec.name] = min(len(xq), lava_limit) if spec.subset else len(xq)
        if ns[spec.name] < 1:
            raise BackendError(f"{spec.name}: no samples to compare (check --limit / --lava-limit / --inputs)")
        ks[spec.name] = min(ns[spec.name], max(1, POTENTIAL_BUDGET // per_sample)) if spec.reports_potentials else 0
    out = {s.name: Streamed(s.name) for s in specs}
    ints = [s for s in specs if s.integer]
    acc = {}
    for start in range(0, len(xq), chunk):
        res = {}
        for spec in specs:
            stop = min(start + chunk, ns[spec.name])
            if stop <= start:
                continue
            t0 = time.perf_counter()
            res[spec.name] = r = _run(spec, bundle, xq[start:stop], start, ks[spec.name], progress)
            out[spec.name].add(r, time.perf_counter() - t0, hashes)
        for i, sa in enumerate(ints):
            for sb in ints[i + 1:]:
                if sa.name in res and sb.name in res:
                    key = (sa.name, sb.name)
                    p = compare_chunk(bundle, xq[start:start + chunk], res[sa.name], res[sb.name], sa, sb, start,
                                      need_first=key not in acc or not _has_spike_first(acc[key]))
                    acc[key] = merge_pair(acc.get(key), p)
        del res                                     # the chunk's spike trains go
    pairs, failures = [], []
    for i, sa in enumerate(ints):
        for sb in ints[i + 1:]:
            p, why = finish_pair(acc[(sa.name, sb.name)], sa, sb, exact, mismatch_bound, g)
            pairs.append(p)
            failures += [why] if why else []
    return out, pairs, failures


def _has_spike_first(p: dict) -> bool:
    return p.get("first") is not None and p["first"]["t"] is not None
