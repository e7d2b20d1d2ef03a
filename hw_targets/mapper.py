"""map_network: place a NetDesc on a target's cores and count what it takes (a ResourceReport).

Open-source Lava has no partitioner or resource estimator (docs/design.md#resources-and-mapping), so this is our own
model. It is an estimate, not Intel's compiler. Modelling choices:

* Cores are not shared between layers; every core of a layer holds one tile of its output:
  conv outputs are tiled as (channels, rows, cols) blocks, dense/readout outputs as neuron ranges.
  Per layer we pick the feasible tile with the fewest cores (all constraints grow with the tile,
  so the first feasible tile in order of core count is the minimum).
* A core holds at most `neurons_per_core` neurons, `synaptic_memory_bytes_per_core` bytes of
  synapses (+ `neuron_state_bytes` per neuron where state shares that memory, Loihi 2), at most
  `input_axons_per_core` distinct inputs and `output_axons_per_core` outgoing axons.
* Synapse memory follows nengo-loihi's SynapseConfig.bits_per_axon: an input axon's synapse list is
  cut into blocks of `synapses_per_block`, each block costs n * (weight_bits + index_bits) +
  `synapse_header_bits`, rounded up to `memory_word_bits`. Dense lists (an input reaching every
  neuron of the core) need no index bits; sparse ones (expanded conv) address their compartment
  with max(index_bits_min, bits to address the tile) bits.
* Conv without weight sharing (Loihi 1 here): one discrete input axon per input neuron (C_in x the
  tile's receptive-field rows x cols); each carries the expanded synapses to the tile's outputs.
* Conv with weight sharing (Loihi 2 here): the kernel slice of the tile's tc output channels is
  stored once per core, as one list of tc synapses per (input channel, kernel tap), plus one
  population axon entry (`axon_entry_bytes`) per receptive-field position carrying the channel.
* Output axons: one per (neuron, destination core it must reach), computed against the next
  layer's tiling (layers are mapped last to first). With weight sharing, conv-to-conv traffic uses
  population axons: one per (source position, destination core), the channel riding as the atom
  (nengo-loihi pop16/pop32 axons). The readout sends nothing on chip.
* A sum-pool stage (LayerDesc kind "sumpool", export/resources.pool_desc, Loihi 2 only) is tiled like
  a conv output; its synapses are depthwise (each input reaches one pool neuron, weight 1: _pool_cost)
  and it sends counts as graded spikes to the next layer, whose synapses then read the pooled map
  (k^2 fewer weights and inputs than the folded AvgPool). Traffic into and out of it uses the conv
  model's population axons (conservative: a depthwise stage reaches fewer channel tiles).
* A readout whose fan-in does not fit one core is split into `groups` fan-in slices on separate
  cores; the host adds the partial sums (the readout is linear). Spiking layers cannot be split
  that way (the threshold is not linear): if one neuron does not fit a core the layer is refused.
* Feedback edges (LayerDesc.feedback) are input connections like the forward one: their synapses
  and input axons are costed on every core of the destination layer (dense: every source neuron
  reaches every destination neuron; conv: the same receptive-field model as a forward conv), and
  the source layer's output axons count the destination cores each of its neurons reaches. The
  destination is placed after the source (mapping runs last to first), so the mapper repeats the
  pass with the previous pass's placement of each feedback destination until the placement no
  longer changes (the first pass assumes one destination core per neuron).
* Two synapse words per weight (LayerDesc.weight_words = 2, words.py): each word is its own connection
  (its own weight_exp) into the same neurons, so every connection into the layer (forward and feedback)
  costs its synapse memory and its input axons twice (choice: the axons too, as two connections).
* A graded input layer on a target without graded spikes (Loihi 1) is host-injected: the host
  computes W x + B (constant over the T steps) and sets it as the neurons' bias, so the layer
  holds neurons but no synapses or input axons (rules.check_graded_input checks the bias range).
* Per-core memory and axons are reported for each layer's worst tile; memory utilization is
  therefore an upper bound.
For the ONNX target there are no cores: the report counts neurons, parameters and float32 bytes.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from saf.hw_targets.base import LayerDesc, NetDesc, Target, TargetError
from saf.hw_targets.report import LayerReport, ResourceReport


def _n(v) -> str:
    return f"{int(v):,}"


def _kb(nbytes) -> str:
    return f"{math.ceil(nbytes / 1024):,} KB"


def list_bits(n, target: Target, index_bits: int = 0):
    """Memory bits of synapse lists holding `n` synapses each (int or array; nengo-loihi
    SynapseConfig.bits_per_axon with the target's block, header and word sizes)."""
    n = np.asarray(n, dtype=np.int64)
    spb, word = target.synapses_per_block, target.memory_word_bits
    bpw = (target.weight_bits or 8) + index_bits

    def block(m):
        return -(-(m * bpw + target.synapse_header_bits) // word) * word

    full, rem = n // spb, n % spb
    return full * block(spb) + np.where(rem > 0, block(rem), 0)


def conv_synapse_count(in_shape, c_out: int, kernel, stride: int = 1, padding: int = 0) -> int:
    """Expanded connections of a conv layer: C_out x C_in x in-bounds taps summed over outputs."""
    c_in, h, w = in_shape
    kh, kw = kernel

    def taps(n_in, k):
        n_out = (n_in + 2 * padding - k) // stride + 1
        idx = np.arange(n_out)[:, None] * stride - padding + np.arange(k)[None, :]
        return int(((idx >= 0) & (idx < n_in)).sum())

    return int(c_out) * int(c_in) * taps(h, kh) * taps(w, kw)


def _candidates(n: int) -> list:
    """Tile lengths giving every distinct tile count: ceil(n / k) for k = 1..n (computed as the
    values for k <= sqrt(n) plus all lengths <= sqrt(n) + 1; extra lengths are harmless)."""
    r = math.isqrt(n) + 1
    return sorted({-(-n // k) for k in range(1, r + 1)} | set(range(1, min(n, r) + 1)))


@lru_cache(maxsize=8192)
def _axis(n_out: int, t: int, k: int, s: int, p: int, n_in: int) -> tuple:
    """Output tiles of length t on one axis. For the tile with the largest receptive field:
    (number of valid input positions it reads, how many of its outputs each of them feeds)."""
    best = (0, 0, ())
    for a in range(0, n_out, t):
        o = np.arange(a, min(a + t, n_out))
        idx = (o[:, None] * s - p + np.arange(k)[None, :]).ravel()
        idx = idx[(idx >= 0) & (idx < n_in)]
        cnt = np.bincount(idx, minlength=n_in)
        cnt = cnt[cnt > 0]
        key = (len(cnt), int(cnt.sum()), tuple(int(c) for c in cnt))
        best = max(best, key)
    return best[0], best[2]


@lru_cache(maxsize=8192)
def _dest_span(n_src: int, t_src: int, n_out: int, t_out: int, k: int, s: int, p: int) -> int:
    """Max over source tiles (length t_src) of the summed number of destination tiles (length
    t_out) each source position feeds through a conv of kernel k, stride s, padding p."""
    y = np.arange(n_src)
    lo = np.maximum(0, -(-(y + p - k + 1) // s))
    hi = np.minimum(n_out - 1, (y + p) // s)
    span = np.where(hi >= lo, hi // t_out - lo // t_out + 1, 0)
    return max(int(span[a:a + t_src].sum()) for a in range(0, n_src, t_src))


def _index_bits(n_tile: int, target: Target) -> int:
    return max(target.index_bits_min, (max(n_tile, 1) - 1).bit_length())


def _host_injected(layer: LayerDesc, target: Target) -> bool:
    return layer.input_graded and not target.graded_spikes


def _out_axons(layer: LayerDesc, tile: tuple, nxt, target: Target) -> int:
    """Output axons of one core holding `tile` of `layer`, given the next layer's placement."""
    tc, tr, tw = tile
    if nxt is None:
        return 0
    nl, info = nxt
    if info is None:                       # next layer refused: count one destination per neuron
        return tc * tr * tw
    if nl.kind in ("conv", "sumpool") and layer.kind in ("conv", "sumpool") and nl.in_shape == layer.out_shape:
        (_, h, w), (c2, h2, w2) = layer.out_shape, nl.out_shape
        (kh, kw), (tc2, tr2, tw2) = nl.kernel, info["tile"]
        rows = _dest_span(h, tr, h2, tr2, kh, nl.stride, nl.padding)
        cols = _dest_span(w, tw, w2, tw2, kw, nl.stride, nl.padding)
        # population axons (weight sharing): one axon per source position carries its channels
        per_pos = 1 if target.conv_weight_sharing else tc
        return per_pos * rows * cols * -(-c2 // tc2)
    return tc * tr * tw * info["cores_per_group"]


def _conn_cost(conn, out_shape: tuple, tile: tuple, target: Target, fan_in: int) -> tuple:
    """(memory bytes, input axons) of one input connection (a layer's forward synapses or a
    FeedbackDesc) on the worst core holding `tile` of an output of shape out_shape."""
    tc, tr, tw = tile
    n = tc * tr * tw
    if conn.kind == "sumpool":             # depthwise k x k ones: each input reaches one pool neuron
        return _pool_cost(conn, tile, target)
    if conn.kind != "conv":                # dense / readout: every input reaches every neuron
        return fan_in * int(list_bits(n, target)) // 8, fan_in
    c_in, h, w = conn.in_shape
    kh, kw = conn.kernel
    nr, rows = _axis(out_shape[1], tr, kh, conn.stride, conn.padding, h)
    nc, cols = _axis(out_shape[2], tw, kw, conn.stride, conn.padding, w)
    if target.conv_weight_sharing:
        syn = c_in * kh * kw * int(list_bits(tc, target)) // 8
        return syn + nr * nc * target.axon_entry_bytes, nr * nc
    per_axon = tc * np.outer(np.array(rows), np.array(cols))
    syn = c_in * int(list_bits(per_axon, target, _index_bits(n, target)).sum()) // 8
    return syn, c_in * nr * nc


def _pool_cost(layer: LayerDesc, tile: tuple, target: Target) -> tuple:
    """(memory bytes, input axons) of a sum-pool stage's core holding `tile` (channels, rows, cols) of
    the pooled map: it reads tc channels x (tr k) x (tw k) input positions, each feeding one pool
    neuron with weight 1. With weight sharing (Loihi 2) the ones kernel is one list of 1 synapse per
    (channel, tap) plus one population axon entry per input position; without it, one axon per
    input neuron carrying its one synapse."""
    tc, tr, tw = tile
    kh, kw = layer.kernel
    nr, nc = tr * kh, tw * kw
    if target.conv_weight_sharing:
        syn = tc * kh * kw * int(list_bits(1, target)) // 8
        return syn + nr * nc * target.axon_entry_bytes, nr * nc
    n = tc * tr * tw
    return tc * nr * nc * int(list_bits(1, target, _index_bits(n, target))) // 8, tc * nr * nc


def _tile_cost(layer: LayerDesc, tile: tuple, target: Target, fan_in: int) -> tuple:
    """(neurons, memory bytes, input axons) of the worst core holding `tile`: its forward synapses
    (none when host-injected) and those of every feedback edge into the layer, each stored once per
    synapse word (LayerDesc.weight_words)."""
    n = tile[0] * tile[1] * tile[2]
    mem, axons = n * target.neuron_state_bytes, 0
    conns = [] if _host_injected(layer, target) else [(layer, fan_in)]
    words = int(layer.weight_words)
    for conn, f in conns + [(fb, fb.fan_in) for fb in layer.feedback]:
        m, a = _conn_cost(conn, layer.out_shape, tile, target, f)
        mem, axons = mem + words * m, axons + words * a
    return n, mem, axons


def _limits_problem(layer, target, n, mem, ax_in, ax_out, what) -> list:
    out = []
    if mem > target.synaptic_memory_bytes_per_core:
        out.append(f"layer {layer.name}: {what} needs {_kb(mem)}, a core holds "
                   f"{_kb(target.synaptic_memory_bytes_per_core)}")
    if ax_in > target.input_axons_per_core:
        out.append(f"layer {layer.name}: {what} needs {_n(ax_in)} input axons, a core takes "
                   f"{_n(target.input_axons_per_core)}")
    if ax_out > target.output_axons_per_core:
        out.append(f"layer {layer.name}: {what} needs {_n(ax_out)} output axons, a core has "
                   f"{_n(target.output_axons_per_core)}")
    return out


def single_neuron_problems(layer: LayerDesc, target: Target) -> list:
    """Why one neuron of `layer` cannot be placed on any core (empty if it can). A readout's
    fan-in can be split into host-added partial sums, so a readout never appears here."""
    if target.kind != "loihi" or layer.kind == "readout" or layer.kind not in target.supported_kinds:
        return []
    if layer.kind == "conv":
        c_in = layer.in_shape[0]
        kh, kw = layer.kernel
        what = f"one neuron ({_n(c_in)} channels x {kh}x{kw} kernel = fan-in {_n(layer.fan_in)})"
    else:
        what = f"one neuron's fan-in of {_n(layer.fan_in)} synapses"
    n, mem, ax_in = _tile_cost(layer, (1, 1, 1), target, layer.fan_in)
    return _limits_problem(layer, target, n, mem, ax_in, 0, what)


def _all_out_axons(layer: LayerDesc, tile: tuple, nxt, fb_dests: list, target: Target) -> int:
    """Output axons to the next layer plus those to every feedback destination (fb, placement)."""
    return _out_axons(layer, tile, nxt, target) + sum(_out_axons(layer, tile, d, target) for d in fb_dests)


def _map_layer(layer: LayerDesc, target: Target, nxt, fb_dests: list = ()) -> tuple:
    """Place one layer. Returns (LayerReport, placement info or None, problems). fb_dests: one
    (FeedbackDesc, destination placement or None) per feedback edge leaving the layer."""
    npc, mem_max = target.neurons_per_core, target.synaptic_memory_bytes_per_core
    rep = LayerReport(name=layer.name, kind=layer.kind, neurons=layer.n_neurons, cores=0,
                      neurons_per_core=0, tile=(), groups=1, memory_bytes_per_core=0,
                      input_axons_per_core=0, output_axons_per_core=0,
                      host_injected=_host_injected(layer, target), parameters=_params(layer))
    if layer.kind not in target.supported_kinds:
        rep.feasible = False
        return rep, None, [f"layer {layer.name}: kind '{layer.kind}' is not supported on "
                           f"{target.name}"]
    problems = single_neuron_problems(layer, target)
    if problems:
        rep.feasible = False
        return rep, None, problems
    fan_in, groups = layer.fan_in, 1
    if layer.kind == "readout" and not rep.host_injected:
        # smallest number of fan-in slices whose single neuron fits a core
        while True:
            f = -(-layer.fan_in // groups)
            _, mem, ax = _tile_cost(layer, (1, 1, 1), target, f)
            if (mem <= mem_max and ax <= target.input_axons_per_core) or f == 1:
                break
            groups += 1
        fan_in = f
    c, h, w = layer.grid()
    if layer.kind in ("conv", "sumpool"):
        tiles = [(tc, tr, tw) for tc in _candidates(c) for tr in _candidates(h)
                 for tw in _candidates(w) if tc * tr * tw <= npc]
    else:
        tiles = [(tn, 1, 1) for tn in _candidates(c) if tn <= npc]
    ncores = {t: -(-c // t[0]) * -(-h // t[1]) * -(-w // t[2]) for t in tiles}
    tiles.sort(key=lambda t: (ncores[t], -t[0] * t[1] * t[2]))
    for tile in tiles:
        n, mem, ax_in = _tile_cost(layer, tile, target, fan_in)
        ax_out = _all_out_axons(layer, tile, nxt, fb_dests, target)
        if mem <= mem_max and ax_in <= target.input_axons_per_core and \
                ax_out <= target.output_axons_per_core:
            cores = ncores[tile] * groups
            rep.cores, rep.tile, rep.groups = cores, tile, groups
            rep.neurons_per_core = n
            rep.memory_bytes_per_core, rep.input_axons_per_core = mem, ax_in
            rep.output_axons_per_core = ax_out
            return rep, dict(tile=tile, cores_per_group=ncores[tile]), []
    # even the smallest tile fails (only the output axons can do this after the checks above)
    n, mem, ax_in = _tile_cost(layer, (1, 1, 1), target, fan_in)
    rep.feasible = False
    return rep, None, _limits_problem(layer, target, n, mem, ax_in,
                                      _all_out_axons(layer, (1, 1, 1), nxt, fb_dests, target), "one neuron")


def _params(layer: LayerDesc) -> int:
    """Stored weights + biases + the layer's threshold (spiking layers)."""
    return int(layer.n_weights) + int(layer.n_biases) + (1 if layer.spiking else 0)


def require_target(target) -> Target:
    """`target` itself when it is a Target (names are resolved by targets.get_target)."""
    if not isinstance(target, Target):
        raise TargetError(f"expected a Target or a target name, got {type(target).__name__}")
    return target


MAX_PASSES = 8


def _place(net: NetDesc, target: Target) -> tuple:
    """(LayerReports, problems): last to first (output axons need the next layer's placement),
    repeated while a feedback destination's placement changes (see the module docstring)."""
    index = {l.name: i for i, l in enumerate(net.layers)}
    fb_from = {}                                   # source index -> [(FeedbackDesc, dest index)]
    for j, l in enumerate(net.layers):
        for fb in l.feedback:
            if fb.src not in index:
                raise ValueError(f"layer {l.name}: feedback from unknown layer {fb.src!r}")
            fb_from.setdefault(index[fb.src], []).append((fb, j))
    infos = [None] * len(net.layers)
    for _ in range(MAX_PASSES):
        reports, problems, nxt, placed = [None] * len(net.layers), [], None, [None] * len(net.layers)
        for i in range(len(net.layers) - 1, -1, -1):
            layer = net.layers[i]
            dests = [(fb, placed[j] if j > i else infos[j]) for fb, j in fb_from.get(i, [])]
            rep, info, probs = _map_layer(layer, target, nxt, dests)
            reports[i], placed[i] = rep, info
            problems = probs + problems
            nxt = (layer, info)
        if not fb_from or placed == infos:
            break
        infos = placed
    return reports, problems


def map_onto(net: NetDesc, target: Target) -> ResourceReport:
    """Assign every layer's neurons and synapses to cores of `target` (targets.map_network resolves names)."""
    target = require_target(target)
    params = sum(_params(l) for l in net.layers)
    if target.kind != "loihi":
        layers = [LayerReport(name=l.name, kind=l.kind, neurons=l.n_neurons, cores=0,
                              neurons_per_core=0, tile=(), groups=1, memory_bytes_per_core=0,
                              input_axons_per_core=0, output_axons_per_core=0,
                              parameters=_params(l)) for l in net.layers]
        # float32 initializers: 4 bytes per stored parameter
        return ResourceReport(target=target.name, system=target.description, layers=layers,
                              parameters=params, parameter_bytes=4 * params)
    reports, problems = _place(net, target)
    cores = sum(r.cores for r in reports)
    chips = -(-cores // target.cores_per_chip)
    total = target.total_cores
    if cores > total:                     # refused layers hold 0 cores: then a lower bound
        least = "at least " if any(not r.feasible for r in reports) else ""
        problems.append(f"needs {least}{_n(cores)} cores ({_n(chips)} chips), {target.name} "
                        f"{target.system_name} has {_n(total)}")
    neurons = sum(r.neurons for r in reports if r.feasible)
    mem = sum(r.memory_bytes_per_core * r.cores for r in reports)
    return ResourceReport(
        target=target.name, system=target.system_name, layers=reports, cores_used=cores,
        chips_used=chips, cores_available=total,
        neuron_utilization=neurons / (cores * target.neurons_per_core) if cores else 0.0,
        memory_utilization=mem / (cores * target.synaptic_memory_bytes_per_core) if cores else 0.0,
        parameters=params, parameter_bytes=0, fits=not problems, problems=problems)
