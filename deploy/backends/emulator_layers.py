"""Layer-major schedule of the emulator for feed-forward graphs (no feedback edges).

Without feedback, layer l's spikes at every step depend only on layer l-1's spikes, so a whole layer
can run for all T steps before the next one starts. Each spiking layer is one compiled parallel kernel
(emulator_kernels.spiking_layer): per sample, the synaptic sums of its T (sample, step) rows (one row for
a constant input) into a small buffer, then the neuron recurrence over them, so the sums never travel
through memory and each layer costs one parallel launch. Synapses run event-driven, as on the chip:
each spike adds its integer weight row (each nonzero x_q of the first layer its value times the row),
so the work is proportional to the spikes, not to the dense fan-in, and the kernels count it
(info["macs_executed"]). Feature maps are held channels-last (HWC) inside this schedule; dense weights,
biases and recorded spikes/potentials are permuted to and from the IR's (C, H, W) order. Sums are
integers (int32, int64 where a sum could pass 2^31); the tests compare this schedule with the step
schedule spike for spike and potential for potential, and with saf-int.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from saf.export.ir import Graph
from saf.core.neuron_modes import COMPARE_GT

import saf.deploy.backends.emulator_kernels as kernels


def supports(graph: Graph, options: dict, plan) -> bool:
    """True when the layer-major schedule computes exactly what emulate() would: no feedback edges,
    every fault-injection option at its correct default, float (exact) synaptic sums, one-state
    neurons (no carried current, Layer.du) and the integrating readout (not Layer.first_spike)."""
    return (not graph.feedback and not options and all(np.dtype(sy.dtype).kind == "f" for sy in plan.syn)
            and not any(getattr(l, "two_state", False) for l in graph.layers)
            and not getattr(graph.readout, "first_spike", False))


def _hwc_order(shape: tuple) -> np.ndarray:
    """perm with x_hwc = x_chw[perm] for a (C, H, W) map (the identity for a flat shape)."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclass
class _Stage:
    """One synapse in layer-major form, reading its input in the previous stage's layout."""
    wint: np.ndarray                    # [K, n_out] int32 (int64 where a sum could pass 2^31): dense rows
                                        # in the input's layout, or conv rows kernels.run_weights
    bias: np.ndarray                    # [n_out] int64 in output layout
    out_perm: np.ndarray                # output layout -> IR order: ir = out[:, inv]; out = ir[:, out_perm]
    geom: Optional[tuple] = None        # conv: (H, W, C, kh, kw, stride, pad, Ho, Wo)
    tab: Optional[np.ndarray] = None    # conv: kernels.scatter_table of geom
    pool: Optional[tuple] = None        # dense after a k x k sum pool: (H, W, C, k) of its HWC input
    runs: Optional[kernels.ConvRuns] = None     # conv: kernels.conv_runs(tab), what each input pixel reaches


def unpooled(layer) -> tuple:
    """(weight, stride, padding) reading the layer's input before its k x k sum pool (Layer.in_pool)
    (a conv's; a pooled dense layer pools its input's counts first, kernels.pool_hwc):
    each weight repeated over its k x k block (a conv's stride and padding times k), so that
    W' s = W sum_pool(s) exactly; for k = 1 the layer's own."""
    w = np.asarray(layer.weight, dtype=np.int64)
    k = int(getattr(layer, "in_pool", 1))
    if k == 1:
        return w, int(layer.stride), int(layer.padding)
    if layer.kind == "conv":
        return (np.repeat(np.repeat(w, k, axis=2), k, axis=3), int(layer.stride) * k, int(layer.padding) * k)
    c, h, wd = layer.in_shape
    w = w.reshape(w.shape[0], c, h // k, wd // k)
    return np.repeat(np.repeat(w, k, axis=2), k, axis=3).reshape(w.shape[0], -1), 1, 0


def _stages(graph: Graph, plan) -> list:
    stages = []
    for li, layer in enumerate(graph.layers):
        # the input arrives in the layout of what produced it (a flat in_shape may follow a conv map)
        src = tuple(graph.input_shape) if li == 0 else tuple(graph.layers[li - 1].out_shape)
        in_perm = _hwc_order(src) if len(src) == 3 and layer.kind != "conv" else _hwc_order(tuple(layer.in_shape))
        w, stride, pad = unpooled(layer)
        if layer.kind == "conv":
            c, h, wd = layer.in_shape
            co, _, kh, kw = w.shape
            _, ho, wo = layer.out_shape
            mat = kernels.run_weights(w)
            geom = (h, wd, c, kh, kw, stride, pad, ho, wo)
        else:                           # dense / readout: columns in the input's layout
            mat = w.reshape(w.shape[0], -1)[:, in_perm].T
            geom = None
        out_perm = _hwc_order(tuple(layer.out_shape))
        # int32 sums where |W x| < 2^31 for the inputs this synapse sees (spikes, counts up to T, or x_q)
        in_max = plan.x_max if li == 0 else (int(graph.T) if not layer.spiking else 1)
        it = np.int32 if np.abs(mat).sum(axis=0).max(initial=0) * in_max < (1 << 31) else np.int64
        tab = None if geom is None else kernels.scatter_table(*geom[:2], *geom[3:])
        k, pool = int(getattr(layer, "in_pool", 1)), None
        if k > 1 and geom is None:      # dense: pool the counts first, then the k^2 times smaller weight
            c, h, wd = layer.in_shape
            pool = (h, wd, c, k)
            mat = np.asarray(layer.weight, dtype=np.int64).reshape(layer.weight.shape[0], -1)
            mat = mat[:, _hwc_order((c, h // k, wd // k))].T
        stages.append(_Stage(np.ascontiguousarray(mat.astype(it)), plan.bias[li][out_perm], out_perm, geom, tab,
                             pool, None if tab is None else kernels.conv_runs(tab, *geom[3:5], geom[2], w.shape[0])))
    return stages


def _event_sums(stage: _Stage, x: np.ndarray, work: Optional[dict] = None) -> np.ndarray:
    """The readout's sums (serial kernels): W x for x [rows, n_in] (input layout: binary spikes, counts or
    x_q) -> [rows, n_out] integers (output layout); each nonzero input adds its value times its weight row.
    work["macs"] (when given) grows by the multiply-adds executed, as the kernels count them: a nonzero
    dense input, its weight row; a nonzero conv input, Co per output pixel it reaches; zeros nothing."""
    n_out = stage.wint.shape[1] if stage.geom is None else stage.geom[7] * stage.geom[8] * stage.wint.shape[1]
    out = np.empty((x.shape[0], n_out), dtype=stage.wint.dtype)
    x = np.ascontiguousarray(x)
    if stage.pool is not None:          # k x k sum pool of the (channels-last) input: counts
        h, w, c, k = stage.pool
        counts = np.empty((x.shape[0], (h // k) * (w // k) * c), dtype=stage.wint.dtype)
        kernels.pool_hwc(x, h, w, c, k, counts)
        x = counts
    hits = np.empty(x.shape[0], dtype=np.int64)
    if stage.geom is None:
        kernels.dense_sums(x, stage.wint, out, hits)
    else:
        kernels.conv_sums(x, stage.wint, *stage.runs, stage.geom[2], out, hits)
    if work is not None:
        work["macs"] += int(hits.sum()) * int(stage.wint.shape[1])
    return out


def _to_ir(a: np.ndarray, shape: tuple) -> np.ndarray:
    """[B, T, n] in a stage's output layout (channels-last for a (C, H, W) map) -> IR order (C, H, W)."""
    if len(shape) != 3:
        return a
    c, h, w = shape
    return a.reshape(a.shape[0], a.shape[1], h * w, c).transpose(0, 1, 3, 2).reshape(a.shape[0], a.shape[1], -1)


def emulate_layers(graph: Graph, frames: np.ndarray, varying: bool, plan, *, sl: slice, out: dict) -> None:
    """Fill out["readout"][sl] (and spikes/potentials/sat/vmax) for the samples sl of frames [N, T, n_in].
    Spikes and potentials are recorded where out holds their arrays (not None)."""
    stages = getattr(plan, "layer_major_stages", None)
    if stages is None:
        stages = plan.layer_major_stages = _stages(graph, plan)
    T, sp = int(graph.T), plan.spiking
    ro = graph.readout
    b = sl.stop - sl.start
    m = kernels.decay_factor(int(graph.decay))
    in_perm = _hwc_order(tuple(graph.input_shape))
    x = frames[sl] if varying else frames[sl, 0]
    x = np.ascontiguousarray(x[..., in_perm]).reshape(b * T if varying else b, -1)
    S = None
    rec = out["potentials"] is not None
    no_runs = (np.empty(0, dtype=np.int64),) * 5 + (0,)
    for li, layer in enumerate(sp):
        st = stages[li]
        S = np.empty((b, T, layer.n_out), dtype=bool)
        V = np.empty((b, T, layer.n_out), dtype=np.int64) if rec else np.empty((1, 1, 1), dtype=np.int64)
        sat, vmax, hits = (np.empty(b, dtype=np.int64) for _ in range(3))
        conv = st.geom is not None
        kernels.spiking_layer(x, li == 0 and not varying, st.wint, *(st.runs if conv else no_runs),
                              st.geom[2] if conv else 0,
                              st.pool if st.pool is not None else (0, 0, 0, 1), st.bias, int(layer.frac_bits),
                              int(layer.threshold) << int(layer.frac_bits), m, int(layer.v0),
                              layer.compare == COMPARE_GT, kernels.RESET_CODES[layer.reset], S, V, rec, sat, vmax,
                              hits)
        out["macs"] += int(hits.sum()) * int(st.wint.shape[1])
        out["sat"][layer.name] += int(sat.sum())
        out["vmax"][layer.name] = max(out["vmax"][layer.name], int(vmax.max(initial=0)))
        if out["spikes"] is not None:
            out["spikes"][li][sl] = _to_ir(S, tuple(layer.out_shape))
        if rec:
            out["potentials"][li][sl] = _to_ir(V, tuple(layer.out_shape))
        x = S.reshape(b * T, -1)
    st = stages[-1]
    if ro.decay:              # R[t] = decay_r(R[t-1]) + ((W_o s_N[t] + B_o) << F_r)
        O = _event_sums(st, S.reshape(b * T, -1), out).astype(np.int64).reshape(b, T, -1) + st.bias
        R = np.zeros((b, ro.n_out), dtype=np.int64)
        for t in range(T):
            R = kernels.decay_trunc(R, int(ro.decay)) + (O[:, t] << ro.readout_shift)
        out["readout"][sl] = R
    else:                     # R[T] = W_o (sum_t s_N[t]) + T * B_o
        counts = S.sum(axis=1, dtype=np.int64)
        out["readout"][sl] = _event_sums(st, counts, out).astype(np.int64) + T * st.bias
