"""Grid-trained runs (issue 28): the calibration that fixes a run's grid, and the export that writes it.

Calibration (`saf train --deploy-target T`, after the float calibration epoch): the export quantizer
(export/quantize.py) runs once on the folded float network as it stands, with the dataset's input
quantization; its per-layer scale, integer threshold, bias grid and F, the target's weight grid and the
readout's decay become the run's GridSpec (train/grid/record.py), fixed for the rest of training. Fixed, not
learned: a threshold that moved would move every integer weight of its layer across the grid at once, and a
fixed grid is what lets the checkpoint be the deployed network bit for bit.

Export of such a run does no search and no rounding: the integer weights are the checkpoint's (stored by the
trainer from train/grid/forward.py grid_weights), re-derived here from the checkpoint's float weights by
that same function and refused when they differ (a tampered checkpoint), then folded (AvgPool glue, exact).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from saf.hw_targets.rules import bias_limits
from saf.train.grid.forward import int_weights
from saf.train.grid.methods import GRID_METHODS
from saf.train.grid.record import GridSpec, LayerGrid
from saf.train.checkpoint import read_checkpoint
from saf.train.grid.store import split_grid, stored_list

from saf.export.fold.snn import fold_avgpool_into_conv, fold_glue_into_dense, fold_network
from saf.export.ir import DU_NONE, Graph, Layer
from saf.export.pipeline.fit import ExportError
from saf.export.proof.certificate import Check
from saf.export.quantize import QuantizeError, input_quantization, quantize, weight_grid


def grid_refusal(net, cfg: dict) -> str:
    """Why `net` has no grid forward here ("" when it has): one line naming what to change."""
    if cfg.get("method") == "fp":
        return "--method fp: FP's continuous-time neurons are approximate by nature; --deploy-target is refused"
    if "dsr" in getattr(net, "spec", {}) or cfg.get("method") in ("dsr", "ide"):
        return f"--method {cfg.get('method')}: no grid forward yet (grid methods: {', '.join(GRID_METHODS)})"
    if net.plan.feedback:
        return "--deploy-target: the grid forward covers feed-forward nets; this model has feedback edges"
    if any(net.syn_decays):
        return "--deploy-target: the grid forward covers one-state neurons; this model has a synaptic current (alpha)"
    if cfg.get("encoder", "constant") != "constant":
        return "--deploy-target: the grid forward covers constant-current (image) input, not --encoder rate/latency"
    return ""


def _gains(net, layers) -> list:
    """k^2 of each synapse's folded pooling glue, or ExportError where the glue is not a k x k block sum."""
    out = []
    for lp, fl in zip(net.plan.layers, layers):
        pooled = any(op[0] in ("avgpool", "gap") for op in lp.pre)
        if pooled and fl.pool == 1:
            raise ExportError(f"layer {fl.name}: its pooling glue is not a k x k block average; no grid forward")
        out.append(int(fl.pool) ** 2)
    return out


def calibrate_grid(net, cfg: dict, data, target_name: str) -> GridSpec:
    """The GridSpec of the float `net` now (see the module docstring); ExportError (one line) if none."""
    from saf.hw_targets import get_target

    why = grid_refusal(net, cfg)
    if why:
        raise ExportError(why)
    target = get_target(target_name)
    netd = copy.deepcopy(net).double().cpu()
    layers, feedback = fold_network(netd)
    x = data.x_train
    scale, bits, signed, _ = input_quantization(float(x.max()), float(x.min()), data.input_scale)
    T = int(cfg["T"])
    try:
        g, rep = quantize(layers, feedback, T=T, lam=net.lam, theta=net.theta, target=target, input_scale=scale,
                          input_bits=bits, input_signed=signed, input_exact=bool(data.input_scale),
                          readout_leaks=net.readout_kind.leaks_with_lam)
    except QuantizeError as e:
        raise ExportError(f"--deploy-target {target_name}: {e}") from None
    wmax, step = weight_grid(target)
    F = int(g.layers[0].frac_bits)
    lims = bias_limits(target, F) if target.bias_mantissa_max is not None else None
    lgs = []
    for i, (l, r, k2) in enumerate(zip(g.layers, rep.layers, _gains(net, layers))):
        z = int(r.get("bias_zero_bits", 0))
        bmax = None if lims is None else int(dict(lims)[z] if l.spiking else lims[0][1])
        lgs.append(LayerGrid(scale=float(l.scale), threshold=int(l.threshold) if l.spiking else 0,
                             weight_max=int(wmax), weight_step=int(step), bias_max=bmax, bias_step=1 << z, gain=k2))
    return GridSpec(target=target_name, T=T, decay=int(g.decay), frac_bits=F, readout_decay=int(g.readout.decay),
                    input_scale=float(scale), input_bits=int(bits), input_signed=bool(signed), layers=tuple(lgs))


def _fold_int(w: np.ndarray, lp, fl, gain: int) -> np.ndarray:
    """The integer weight as the folded layer reads it (AvgPool glue replicated over its blocks), exactly."""
    wk = np.asarray(w, dtype=np.float64) * gain
    if lp.kind == "conv" and int(fl.pool) > 1:
        out = fold_avgpool_into_conv(wk, int(fl.pool), int(lp.stride), int(lp.padding))[0]
    elif lp.kind != "conv" and lp.pre:
        out = fold_glue_into_dense(wk, lp.pre, tuple(int(d) for d in lp.raw_in_shape))
    else:
        out = np.asarray(w, dtype=np.float64)
    q = np.rint(out)
    if not np.array_equal(q, out):
        raise ExportError(f"layer {fl.name}: folding its pooling glue into the integer weights is not exact")
    return q.astype(np.int64)


def off_grid(net, grid: GridSpec, stored: list) -> str:
    """Why the checkpoint's integer weights differ from its float weights on its grid (grid_weights), "" if not."""
    for i, ((W, B), (Ws, Bs)) in enumerate(zip(int_weights(net, grid), stored)):
        for what, a, b in (("weights", W, Ws), ("biases", B, Bs)):
            if tuple(a.shape) != tuple(b.shape) or not torch.equal(a, b.long()):
                n = int((a != b).sum()) if tuple(a.shape) == tuple(b.shape) else "all"
                return (f"layer {i + 1}'s float {what} are not on the recorded grid ({n} differ from the stored "
                        f"integer {what}): the checkpoint was changed after training")
    return ""


def on_grid_check(net, grid: GridSpec, stored: list, graph: Graph) -> Check:
    """The certificate's row "the trained model is on the grid": the checkpoint's float weights give its stored
    integer weights (the grid forward's own rounding), and the graph's weights and biases are those integers,
    folded, with the grid's thresholds."""
    why = off_grid(net, grid, stored)
    if not why:
        for lp, fl, lg, (W, B), layer in zip(net.plan.layers, fold_network(copy.deepcopy(net).double().cpu())[0],
                                             grid.layers, stored, graph.layers):
            if not (np.array_equal(layer.weight, _fold_int(W.numpy(), lp, fl, lg.gain))
                    and np.array_equal(layer.bias, B.numpy()) and int(layer.threshold) == int(lg.threshold)):
                why = f"layer {layer.name}: the graph's integers are not the checkpoint's"
                break
    return Check("on_grid", "all", not why, why or f"the trained model is on the grid: the checkpoint's float "
                 f"weights round (train/grid/forward.py) to its {len(stored)} layers' integer weights, which the "
                 f"graph holds bit for bit ({grid.target} grid, F = {grid.frac_bits}, x{grid.input_scale:g} input)")


def grid_graph(net, grid: GridSpec, stored: list, target, meta: dict, where: str) -> Graph:
    """The deployed Graph of a grid-trained checkpoint: its integer weights, no search, no rounding."""
    why = off_grid(net, grid, stored)
    if why:
        raise ExportError(f"{where}: {why}")
    netd = copy.deepcopy(net).double().cpu()
    layers, _ = fold_network(netd)
    F = int(grid.frac_bits)
    out = []
    for lp, fl, lg, (W, B) in zip(net.plan.layers, layers, grid.layers, stored):
        w = _fold_int(W.numpy(), lp, fl, lg.gain)
        b = B.numpy().astype(np.int64)
        if fl.kind == "readout":
            out.append(Layer(name=fl.name, kind="readout", weight=w, bias=b, in_shape=fl.in_shape,
                             out_shape=fl.out_shape, scale=lg.scale, frac_bits=F, decay=int(grid.readout_decay)))
        else:
            out.append(Layer(name=fl.name, kind=fl.kind, weight=w, bias=b, in_shape=fl.in_shape, out_shape=fl.out_shape,
                             threshold=int(lg.threshold), stride=fl.stride, padding=fl.padding, scale=lg.scale,
                             frac_bits=F, du=DU_NONE, reset=fl.reset, compare=fl.compare))
    return Graph(layers=out, T=int(grid.T), lam=float(net.lam), decay=int(grid.decay),
                 input_shape=tuple(layers[0].in_shape), input_scale=float(grid.input_scale),
                 input_bits=int(grid.input_bits), input_signed=bool(grid.input_signed), target=target.name,
                 meta=dict(meta, grid=grid.to_json(), trained_on_grid=True))


def stored_grid(ckpt_bytes, net, where: str):
    """(GridSpec, stored integer weights) of a grid-trained checkpoint, or (None, None) for any other."""
    if getattr(net, "grid", None) is None:
        return None, None
    tensors, _, _ = read_checkpoint(where, data=ckpt_bytes)
    try:
        return net.grid, stored_list(split_grid(tensors)[1], net.n_spiking + 1, where)
    except ValueError as e:
        raise ExportError(str(e)) from None


def grid_attempt(net, ckpt_bytes: bytes, where: str, src, refused_flags: list):
    """The export of a grid-trained checkpoint as a fit.Attempt (no search, no rounding), or None when the
    checkpoint is not grid-trained. src: the fit.Source (target, meta, name, pools, sum_pool are read);
    refused_flags: the options given that would re-quantize (one line)."""
    target, meta, name = src.target, src.meta, src.name
    from saf.export.fold.sum_pool import choose_pools
    from saf.export.pipeline.fit import Attempt, InputQuant, check_fit
    from saf.export.proof.certificate import certify
    from saf.export.quantize import QuantizeReport

    grid, stored = stored_grid(ckpt_bytes, net, where)
    if grid is None:
        return None
    if refused_flags:
        raise ExportError(f"{where} was trained on the {grid.target} grid: its integer network is fixed, so "
                          f"{refused_flags[0]} does not apply (export it without)")
    graph = grid_graph(net, grid, stored, target, meta, where)
    row = on_grid_check(net, grid, stored, graph)
    if not row.ok:
        raise ExportError(f"{where}: {row.detail}")
    a = Attempt(InputQuant(grid.input_scale, grid.input_bits, grid.input_signed, True))
    a.qrep = QuantizeReport(grid.input_scale, grid.input_bits, True, int(grid.frac_bits),
                            [{"name": l.name, "scale": l.scale, "threshold": int(l.threshold) if l.spiking else None,
                              "weight_max": int(np.abs(l.weight).max(initial=0)),
                              "bias_max": int(np.abs(l.bias).max(initial=0)), "from": "checkpoint grid"}
                             for l in graph.layers])
    a.folded = graph
    a.graph, a.pool_choice = choose_pools(graph, src.pools or {}, target, src.sum_pool)
    a.cert = certify(a.graph, extra=(row, *forward_rows(net, grid, a.graph)))
    a.resources, a.advisories = check_fit(a.graph, target, name)
    return a


def forward_rows(net, grid: GridSpec, graph: Graph) -> list:
    """The certificate rows about the trained forward's arithmetic (export/proof/grid_rows.py): its decay and
    saturation, the exactness of its sums in the dtype its weights have, its neuron modes."""
    from saf.export.proof.grid_rows import exact_sum_checks, grid_modes_check, grid_rules_check
    from saf.train.grid.forward import grid_weights

    with torch.no_grad():
        dtype = grid_weights(net, grid)[0][0].dtype
    bits = 1 - int(np.log2(torch.finfo(dtype).eps))        # float64: eps 2^-52, 53 bits of integer
    return [grid_rules_check(graph), *exact_sum_checks(graph, bits, str(dtype).replace("torch.", "")),
            grid_modes_check(net, graph)]


def source_grid_rows(ckpt_bytes: bytes, where: str, graph: Graph) -> list:
    """All of a grid bundle's GRID_ROWS re-derived from its source checkpoint (verify): on_grid against the
    graph with its sum pools unfolded (the form export compared), and forward_rows. A checkpoint that cannot
    be read gives a failing on_grid row, never an exception."""
    from saf.export.fold.sum_pool import unpool_graph
    from saf.train.checkpoint import load_model

    try:
        net, _, _ = load_model(where, data=ckpt_bytes)
        grid, stored = stored_grid(ckpt_bytes, net, where)
    except (ValueError, OSError, ExportError) as e:
        return [Check("on_grid", "all", False, f"{where}: the trained checkpoint cannot be read ({e})")]
    if grid is None:
        return [Check("on_grid", "all", False, f"{where} is not a grid-trained checkpoint")]
    return [on_grid_check(net, grid, stored, unpool_graph(graph)), *forward_rows(net, grid, graph)]
