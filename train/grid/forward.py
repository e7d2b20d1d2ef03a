"""The grid forward: a SpikingNet's target integer network, run in torch (issue 28).

Values are exactly the deployed integer LIF network of export/ir.py (each layer's compare and reset, no
feedback, no synaptic current): integer weights W = clip(round_to(W_eff s / (x_scale k^2), step)), B on its grid, the input
x_q = clip(rint(x * input_scale)), V[t] = sat(decay(V'[t-1]) + (W s_in + B) << F) with Loihi's truncating
12-bit decay (rules.trunc_decay_int, int64: the decay times a 24-bit state leaves float32's mantissa),
s[t] = V[t] >= TH << F, V'[t] = V[t] - s[t] TH << F (or the layer's own compare and reset, export/ir.py), and the readout R[t] = decay_r(R[t-1]) + (W_o s_N + B_o) << F_r.
Every value is an integer held in float64 (sums and products stay far below 2^53, so each is exact whatever
the summation order; float64 also rules out TF32 on CUDA).

Gradients are the float network's: each rounding, truncation and the pooled input's rint pass the gradient
straight through (train/functional/replace.py: value from the integer, gradient from the float expression),
the spike's surrogate sees (V - TH << F) / (s 2^F), the potential in the float units of the trained theta,
and in mode "trace" (SAF-E, OTTT, SAF-F's last step) currents take their weight gradient through the
presynaptic trace as SpikingNet.lif_step does; mode "bptt" keeps the graph through time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as Fn

from saf.train.functional.neuron import bias_coeff, trace_step
from saf.train.functional.replace import replace
from saf.train.grid.rules import DECAY_ONE, quantize_input_values, rint, round_to, saturate, trunc_decay_int
from saf.train.functional.glue import apply_glue
from saf.core.neuron_modes import RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED, RESET_ZERO


@dataclass
class GridState:
    v: list                                   # V'[t-1] per spiking layer, after reset (None before step 1)
    ahat: list                                # presynaptic traces (gradient path only)
    R: Optional[torch.Tensor] = None          # readout state R[t-1] (integer)
    t: int = 0
    s: list = None                            # s[t-1] per spiking layer (reset "subtract-undecayed")


@dataclass
class GridRecord:
    spikes: list = field(default_factory=list)
    potentials: list = field(default_factory=list)     # V[t] after saturation, before reset (integers)


def _synapses(net) -> list:
    return list(net.blocks) + [net.readout]


def grid_weights(net, grid) -> list:
    """[(W, B)] per synapse (spiking layers, then the readout): integer-valued float64 tensors on the grid,
    gradient straight through to the float weights. The one rounding rule of the grid forward, of the
    checkpoint's integer tensors and of export's check (export/pipeline/grid.py)."""
    out = []
    for i, (syn, lg) in enumerate(zip(_synapses(net), grid.layers)):
        div = (float(grid.input_scale) if i == 0 else 1.0) * lg.gain
        w = syn.effective_weight().double() * (lg.scale / div)
        wq = round_to(w, lg.weight_step).clamp(-lg.weight_max, lg.weight_max)
        W = replace(wq, w) if w.requires_grad else wq
        if syn.bias is None:
            B = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        else:
            b = syn.bias.double() * lg.scale
            bq = round_to(b, lg.bias_step)
            if lg.bias_max is not None:
                bq = bq.clamp(-lg.bias_max, lg.bias_max)
            B = replace(bq, b) if b.requires_grad else bq
        out.append((W, B))
    return out


@torch.no_grad()
def int_weights(net, grid) -> list:
    """[(W, B)] as int64 CPU tensors (what the checkpoint stores and export writes)."""
    return [(W.detach().cpu().long(), B.detach().cpu().long()) for W, B in grid_weights(net, grid)]


def quantize(grid, x: torch.Tensor) -> torch.Tensor:
    """x_q of a float input batch (float64, integer values)."""
    return quantize_input_values(x, grid.input_scale, grid.input_bits, grid.input_signed)


def synapse_value(syn, w, x, gain: int):
    x = apply_glue(x, syn.pre)
    if gain > 1:                                  # the sum pool: avg * k^2, exact after rint
        x = replace(rint(x * gain), x * gain) if x.requires_grad else rint(x * gain)
    return Fn.conv2d(x, w, None, syn.stride, syn.padding) if syn.kind == "conv" else Fn.linear(x, w)


def bias_view(syn, B):
    return B.view(1, -1, 1, 1) if syn.kind == "conv" else B.view(1, -1)


def _current(syn, W, B, s_in, a_in, c: float, mode: str, gain: int):
    """W s_in + B (integer value); in mode "trace" the gradient goes through W a_in + B c."""
    if mode != "trace":
        return synapse_value(syn, W, s_in, gain) + bias_view(syn, B)
    with torch.no_grad():
        value = synapse_value(syn, W.detach(), s_in, gain) + bias_view(syn, B.detach())
    return replace(value, synapse_value(syn, W, a_in, gain) + bias_view(syn, B) * c)


def _decay(v, decay: int):
    """Loihi's truncating decay (int64), gradient (4096 - D) / 4096 straight through."""
    value = trunc_decay_int(v.detach().long(), decay).to(v.dtype)
    return replace(value, v * ((DECAY_ONE - int(decay)) / DECAY_ONE)) if v.requires_grad else value


def grid_step(net, grid, xq: torch.Tensor, st: GridState, mode: str, wq: list, record=None) -> tuple:
    """One step of the integer network. Returns (o[t] = (W_o s_N[t] + B_o) / s_o in float units, R[t], state)."""
    t = st.t + 1
    keep = mode == "bptt"
    c = bias_coeff(t, net.lam)
    F = int(grid.frac_bits)
    s_in, a_in = xq, xq * c
    new_v, new_a, new_s = [], [], []
    for l, blk in enumerate(net.blocks):
        lg = grid.layers[l]
        W, B = wq[l]
        cur = _current(blk, W, B, s_in, a_in, c, mode, lg.gain) * float(1 << F)
        vp, reset = st.v[l], net.modes[l].reset
        th = float(int(lg.threshold) << F)
        if vp is not None:
            cur = _decay(vp if keep else vp.detach(), grid.decay) + cur
            if reset == RESET_SUBTRACT_UNDECAYED:         # the previous spike's TH << F, after the decay
                sp = st.s[l] if keep else st.s[l].detach()
                cur = cur - sp * th
        v = saturate(cur)
        s = net._layer_spike_fn(l)((v - th) / (lg.scale * (1 << F)))      # >= or > (the layer's compare)
        if record is not None:
            record.spikes.append(s.detach())
            record.potentials.append(v.detach())
        ah = trace_step(s, None if st.ahat[l] is None else st.ahat[l].detach(), net.lam)
        new_v.append(v - s * th if reset == RESET_SUBTRACT else v * (1 - s) if reset == RESET_ZERO else v)
        new_s.append(s)
        new_a.append(ah)
        s_in, a_in = s, ah
    ro, lg = net.readout, grid.layers[-1]
    o_int = _current(ro, wq[-1][0], wq[-1][1], s_in, a_in, c, mode, lg.gain)
    R = o_int * float(1 << grid.readout_shift)
    if st.R is not None:
        R = _decay(st.R if keep else st.R.detach(), grid.readout_decay) + R
    if not keep:
        new_v, new_s = [v.detach() for v in new_v], [x.detach() for x in new_s]
    return o_int / lg.scale, R, GridState(new_v, [a.detach() for a in new_a], R if keep else R.detach(), t, new_s)


def init_state(net) -> GridState:
    return GridState([None] * net.n_spiking, [None] * net.n_spiking, s=[None] * net.n_spiking)


def logits_of(grid, R: torch.Tensor) -> torch.Tensor:
    """R[T] in the float units of the trained readout (a positive scale: the same argmax, ties included)."""
    return R / (grid.layers[-1].scale * float(1 << grid.readout_shift))


@torch.no_grad()
def grid_run(net, grid, x: torch.Tensor, record: bool = False) -> tuple:
    """(R[T] integer-valued float64 [N, classes], per-step records or []) of a float input batch."""
    return grid_run_quantized(net, grid, quantize(grid, x), record)


@torch.no_grad()
def grid_run_quantized(net, grid, xq: torch.Tensor, record: bool = False) -> tuple:
    """grid_run on an already quantized input x_q (float64 integer values, [N, *input_shape])."""
    wq = grid_weights(net, grid)
    st, recs, R = init_state(net), [], None
    for _ in range(int(grid.T)):
        rec = GridRecord() if record else None
        _, R, st = grid_step(net, grid, xq, st, "plain", wq, rec)
        if record:
            recs.append(rec)
    return R, recs
