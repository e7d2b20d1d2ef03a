"""Describe an integer Graph for hw_targets (a leaf package that knows nothing of the IR) and run its
rule checks and core mapper."""
from __future__ import annotations

import numpy as np

from saf.export.ir import Graph
from saf.core.neuron_modes import COMPARE_GE, RESET_ZERO
from saf.export.proof.state_bound import (initial_drive_max, layer_current_bound, owed_subtraction, state_bound,
                                          two_state_bound)


def _conv_synapses(weight, in_shape, stride: int, padding: int) -> int:
    from saf.hw_targets import conv_synapse_count
    return conv_synapse_count(in_shape, weight.shape[0], weight.shape[2:], stride, padding)


def pool_desc(layer):
    """The sum-pool stage in front of a layer with Layer.in_pool = k > 1 (LayerDesc kind "sumpool",
    named "<layer>.pool"): one neuron per pooled position and channel, k x k ones-weight synapses
    from its channel, sending its count (0..k^2) as a graded spike (hw_targets/mapper.py)."""
    from saf.hw_targets import LayerDesc

    k = int(layer.in_pool)
    out = tuple(layer.syn_in_shape)
    return LayerDesc(name=f"{layer.name}.pool", kind="sumpool", in_shape=tuple(layer.in_shape), out_shape=out,
                     n_neurons=int(np.prod(out)), fan_in=k * k, n_weights=0, n_synapses=layer.n_in,
                     max_abs_weight=1, threshold=0, state_bound=k * k, kernel=(k, k), stride=k,
                     mixed_sign=False, max_abs_current=k * k)


def bias_zero_bits(bias, most: int = 16) -> int:
    """The largest z <= most with every bias a multiple of 2**z (most for all-zero biases)."""
    b = np.abs(np.asarray(bias, dtype=np.int64))
    z = 0
    while z < most and not np.any(b & ((1 << (z + 1)) - 1)):
        z += 1
    return z


def describe(graph: Graph):
    """hw_targets.NetDesc of the graph. Feedback edges are FeedbackDesc entries of their destination
    layer (the mapper costs their synapses, input axons and the source's output axons) and are also
    counted into its synapses, weights and weight statistics. A sum-pooled layer (Layer.in_pool) is
    preceded by its pool stage (pool_desc) and reads the pooled map as graded counts."""
    from saf.hw_targets import LayerDesc, NetDesc
    from saf.hw_targets.base import FeedbackDesc, weight_stats

    descs = []
    for i, l in enumerate(graph.layers):
        fbs = graph.feedback_into(i) if l.spiking else []
        if int(l.in_pool) > 1:
            descs.append(pool_desc(l))
        syn = _conv_synapses(l.weight, l.syn_in_shape, l.stride, l.padding) if l.kind == "conv" else int(l.weight.size)
        ws = weight_stats(l.weight)
        for f in fbs:
            syn += (_conv_synapses(f.weight, graph.layers[f.src].out_shape, f.stride, f.padding)
                    if f.kind == "conv" else int(f.weight.size))
            fs = weight_stats(f.weight)
            ws = dict(max_abs_weight=max(ws["max_abs_weight"], fs["max_abs_weight"]),
                      n_weights=ws["n_weights"] + fs["n_weights"],
                      mixed_sign=ws["mixed_sign"] or fs["mixed_sign"],
                      odd_weights=ws["odd_weights"] or fs["odd_weights"])
        cur = layer_current_bound(l.weight, l.bias, [f.weight for f in fbs], graph.layer_input_max(i),
                                  graph.input_signed and i == 0)
        if l.spiking and l.two_state:     # V fed by the carried current U (state_bound.py)
            syn_b = layer_current_bound(l.weight, np.zeros(1, np.int64), [f.weight for f in fbs],
                                        graph.layer_input_max(i), graph.input_signed and i == 0)
            bound = two_state_bound(syn_b, int(np.abs(l.bias).max(initial=0)), l.frac_bits, int(l.du),
                                    graph.decay, graph.T, abs(int(l.v0)) + owed_subtraction(l),
                                    initial_drive_max(l.full_bias(), l.full_initial_current(), l.frac_bits)
                                    if l.has_initial_current else None)
        else:
            bound = state_bound(cur, l.frac_bits, graph.decay, graph.T, int(l.v0), owed_subtraction(l)) if l.spiking else \
                state_bound(cur, l.readout_shift, l.decay, graph.T)        # R[T] (<< F_r when it leaks)
        if l.first_spike:
            bound = int(graph.T)                                             # first-spike readout: R <= T
        kernel = tuple(l.weight.shape[2:]) if l.kind == "conv" else None
        fdescs = tuple(FeedbackDesc(src=graph.layers[f.src].name, kind=f.kind,
                                    in_shape=tuple(graph.layers[f.src].out_shape), out_shape=tuple(l.out_shape),
                                    n_weights=int(f.weight.size),
                                    kernel=tuple(f.weight.shape[2:]) if f.kind == "conv" else None,
                                    stride=int(f.stride), padding=int(f.padding)) for f in fbs)
        descs.append(LayerDesc(
            name=l.name, kind=l.kind, in_shape=tuple(l.syn_in_shape), out_shape=tuple(l.out_shape),
            n_neurons=l.n_out, fan_in=l.fan_in, n_synapses=syn, threshold=int(l.threshold),
            max_abs_bias=int(np.abs(l.bias).max(initial=0)), state_bound=int(bound), input_graded=(i == 0 and graph.input_max > 1),
            has_feedback_in=bool(fbs), kernel=kernel, stride=int(l.stride), padding=int(l.padding),
            max_abs_current=int(cur), feedback=fdescs, bias_zero_bits=bias_zero_bits(l.bias),
            weight_words=int(l.weight_words), initial_current=bool(l.spiking and l.has_initial_current),
            subtractive_reset=l.reset != RESET_ZERO, fires_at_equality=l.compare == COMPARE_GE, **ws))
    # Real Loihi 2 resets state every 2^k steps: a sample occupies T steps padded to the next power
    # of two (the padding steps' spikes are not read out).
    reset = 1 << max(0, int(graph.T) - 1).bit_length()
    return NetDesc(layers=descs, T=int(graph.T), lam=float(graph.lam_q), decay=int(graph.decay), reset_interval=reset,
                   frac_bits=int(graph.layers[0].frac_bits), input_bits=int(graph.input_bits),
                   name=str(graph.meta.get("spec", {}).get("name", "net")))


def check_resources(graph: Graph, target) -> tuple:
    """(ResourceReport, violations) for the graph on the target."""
    from saf.hw_targets import check, map_network

    net = describe(graph)
    return map_network(net, target), check(net, target)
