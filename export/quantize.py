"""Float folded network -> integer Graph in a target's number formats.

Choice (documented in the README): one scale per layer, relative to the threshold.
- Spiking layer l: its integer threshold is TH_l = floor(theta * w_int_max / m_l), where m_l is the
  largest |weight| reaching the layer (its feed-forward weights, divided by the input scale on the
  first layer, and its feedback weights) and w_int_max the target's largest weight (Loihi: 254 for
  mixed-sign 8-bit weights, whose lowest bit Lava drops; we use even values so nothing is dropped).
  The layer scale is then s_l = TH_l / theta, so the integer threshold is exact by construction,
  and W_int = round(W s_l), B_int = round(b s_l), never beyond w_int_max. Per-channel scales would
  need per-neuron thresholds; the IR keeps one threshold per layer, so scales are per layer (the
  next layer only sees binary spikes, so scales never propagate).
- Two synapse words per weight (weight_words = 2, Loihi 2: hw_targets/words.py): w_int_max is 32,766 (even),
  and a layer whose worst-case state does not fit is lowered to the largest grid value that fits (lower_top),
  not halved; precision_lowered_by_bits is then log2(w_int_max / the value used), to 0.01 bit.
- Readout: s = w_int_max / m_readout; the argmax of R[T] does not depend on the scale. A readout
  the model trained leaking with lam (readout_leaks) gets the network's decay D (its state then
  holds R << F, export/ir.py), a non-leaking one D_r = 0. If its worst-case |R[T]| would not fit
  24 bits, its weight scale is halved like a spiking layer's.
- Fractional bits: F = max(target F, k (T - 1)) for lam = 2^-k, the bits that make every decay
  exact (docs/design.md#decay). If the worst-case state of a layer would not fit 24 bits, the layer's
  weight scale is halved (fewer weight bits, same threshold semantics) until it fits or its weights
  would drop below MIN_WEIGHT_LEVELS; then the certificate says "not exact" and names the layer.
- Alpha firing (DSR: fire at alpha*theta, subtract theta; alpha < 1): the shift identity of
  docs/design.md#initial-potential-and-alpha-firing. With c = (1 - alpha) TH, it is the standard neuron started at V'[0] = c << F
  (Layer.v0) with an extra bias (1 - lam) c per step (none for IF). TH is lowered to the nearest
  value where c is an integer multiple of 2^k (lam = 2^-k; k = 0 for IF), so v0 decays exactly
  (the certificate's initial_potential check) and (1 - lam) c = c - c / 2^k is an integer.
- Biases on a target with a bias format (Loihi: B << F = mantissa << exponent, hw_targets/rules.py
  exact_bias_limit): a layer whose |b s_l| would exceed the exact range first rounds its biases to
  multiples of 2^z (the exponent's spare bits: z = 1 at F = 6 doubles the range to 8,190, an error of
  at most one bias step), and only if that is not enough lowers TH (and with it s_l and every weight)
  to the largest value whose biases fit. Both are recorded per layer (bias_zero_bits,
  threshold_lowered_for_bias) and reported by export (export/pipeline/fit.py searches the input
  quantization around them).
- Synaptic current (FloatLayer.syn_decay = alpha > 0, snnTorch's Synaptic): the IR's two-state layer with
  (4095 - du) / 4096 = alpha exactly (du_for; an alpha with no such du, alpha * 4096 not an integer, is refused
  naming the layer). U[t] = trunc0(alpha U[t-1]) + (W s_in + W_fb s_src) << F is then S syn[t] << F with no
  rounding when every decay drops only zero bits: alpha = p / 2^j (current_decay_bits) and an input entered at
  step t' is decayed t - t' <= T - 1 times, so F >= j (T - 1) suffices for U; V adds U[t] (a multiple of
  2^(F - j(t-1))) and decays it T - t more times by 2^-k, so F >= max(j, k) (T - 1) makes V exact as well.
  The bias: the float form integrates it inside syn (snnTorch adds the Linear's bias to the input current),
  syn_b[t] = sum_{t'<=t} alpha^(t-t') b = c (1 - alpha^t) with c = b / (1 - alpha). The IR's initial current
  (Layer.u0) holds it: B = c and U[0] = u0 = -(c << F) give U[t] + (B << F) = (S[t] - c alpha^t + c) << F with
  S[t] the synaptic part, i.e. syn[t] << F including the bias, for every t (U[0]'s decayed copy -c alpha^t << F
  and the constant B << F add to it). In integers: c = round(b s / (1 - alpha)) on the grid 2^g (a documented
  quantization choice; the float bias the deployed layer realizes is c (1 - alpha) / s, within 2^(g-1)/s of c's
  exact value), with g the least integer >= 0 such that u0 = -(c << F) is a multiple of 2^G,
  G = max(j T, j + k (T - 1)), i.e. g = max(0, G - F). Proof that every truncation is then exact (alpha = p / 2^j,
  lam = 2^-k): u0's share of U after t decays is u0 p^t / 2^(j t) (an integer: v2(u0) >= G >= j t for t <= T,
  so each trunc0 of the sum U drops only zero bits, as the inputs' shares do under F >= j (T - 1)); added to V at
  step t' it is decayed T - t' more times by 2^-k, an integer while F + g >= j t' + k (T - t'), whose maximum
  over t' in 1..T is G. With F >= max(j, k)(T - 1) (below) G - F <= j, so g <= j; for alpha = 1/2 (j = 1),
  c = 2 b s is even already whenever b s is an integer. Loihi's bias grid (2^z, below) is applied after and
  keeps c a multiple of 2^g (rounding a multiple of 2^g to 2^z < 2^g changes nothing). The certificate's
  initial_current row re-derives v2(u0) >= G from the graph. Refused (one line naming the layer): a Synaptic
  bias together with DSR's alpha firing (that shifts B by its own term, which u0 would not cancel).
- frac_bits (export --approximate only): F given below k (T - 1); the decays then truncate and the
  certificate says NOT EXACT (frac_bits rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Optional

import numpy as np

from saf.hw_targets.rules import bias_grid, bias_limits

from saf.train.grid.rules import round_to
from saf.core.neuron_modes import RESET_SUBTRACT_UNDECAYED
from saf.export.fold.snn import FloatLayer
from saf.export.ir import (DU_NONE, STATE_MAX, Feedback, Graph, Layer, current_decay_bits, decay_for, du_for,
                           dyadic_exponent)
from saf.export.proof.state_bound import geometric_sum, layer_current_bound, state_bound, two_state_bound
from saf.core.counts import check_count
from saf.export.weight_grid import QuantizeError, weight_grid

MIN_WEIGHT_LEVELS = 16     # do not lower a layer's weight precision below this many levels


@dataclass
class QuantizeReport:
    input_scale: float
    input_bits: int
    input_exact: bool
    frac_bits: int
    layers: list = field(default_factory=list)     # per layer: name, scale, threshold, w_max, lowered

    def to_dict(self) -> dict:
        return {"input_scale": self.input_scale, "input_bits": self.input_bits,
                "input_exact": self.input_exact, "frac_bits": self.frac_bits, "layers": self.layers}


def input_quantization(x_max: float, x_min: float, dataset_scale, bits_max: int = 8) -> tuple:
    """(input_scale, input_bits, signed, exact). A dataset that promises integer pixels after a
    known scale (digits: 16, MNIST: 255) is quantized without loss; otherwise the range is
    calibrated to bits_max bits."""
    signed = x_min < 0
    if dataset_scale:
        top = int(round(max(abs(x_max), abs(x_min)) * dataset_scale))
        bits = max(1, int(top).bit_length() + (1 if signed else 0))
        return float(dataset_scale), bits, signed, True
    peak = max(abs(x_max), abs(x_min)) or 1.0
    levels = (1 << (bits_max - 1)) - 1 if signed else (1 << bits_max) - 1
    return levels / peak, bits_max, signed, False


def _round_to(a: np.ndarray, step: int) -> np.ndarray:
    return round_to(a, step).astype(np.int64)


def alpha_shift(th: int, dsr_alpha: Fraction, k: Optional[int]) -> Optional[int]:
    """c = (1 - dsr_alpha) TH when it is an integer multiple of 2^k (k None: non-dyadic lam, any
    integer), else None."""
    c = (1 - dsr_alpha) * th
    if c.denominator != 1:
        return None
    return int(c) if k is None or int(c) % (1 << k) == 0 else None


def alpha_threshold(th: int, dsr_alpha: Fraction, k: Optional[int], name: str) -> tuple:
    """(TH', c): the largest TH' <= th with alpha_shift defined."""
    for t in range(th, 0, -1):
        c = alpha_shift(t, dsr_alpha, k)
        if c is not None:
            return t, c
    raise QuantizeError(f"layer {name}: no integer threshold <= {th} makes (1 - dsr_alpha) TH a multiple of "
                        f"2^{k or 0} for dsr_alpha = {dsr_alpha}")


@dataclass(frozen=True)
class _NetGrid:
    """What every spiking layer's quantization shares (made in quantize): threshold theta, weight grid (wmax,
    step; fine: two synapse words), input (scale, largest |x_q|, signedness), F, the leak (geo = sum of the
    decays over T, k, D), the target and its threshold ceiling th_max, T, and DSR's firing fraction."""
    theta: float
    wmax: int
    step: int
    in_scale: float
    x_max: int
    F: int
    geo: float
    th_max: Optional[int]
    in_signed: bool
    dsr_alpha: Fraction
    k: Optional[int]
    D: int
    target: object
    T: int
    fine: bool


def _spiking_layer(i, fl: FloatLayer, fbs: list, g: _NetGrid, du: int = DU_NONE, bias_step: int = 1) -> tuple:
    theta, wmax, step, in_scale, x_max, F = g.theta, g.wmax, g.step, g.in_scale, g.x_max, g.F
    geo, th_max, in_signed, dsr_alpha, k, D = g.geo, g.th_max, g.in_signed, g.dsr_alpha, g.k, g.D
    target, T, fine = g.target, g.T, g.fine
    w_eff = fl.weight / in_scale if i == 0 else fl.weight
    m = max([float(np.abs(w_eff).max(initial=0.0))] + [float(np.abs(f.weight).max(initial=0.0)) for f in fbs])
    if m == 0:
        raise QuantizeError(f"layer {fl.name}: all weights are zero; nothing to quantize")
    top, lowered = wmax, 0
    fit = {"bias_zero_bits": 0, "threshold_lowered_for_bias": None}
    b_max = float(np.abs(fl.bias).max(initial=0.0))
    lim = bias_limits(target, F)[-1][1] if target is not None and target.bias_mantissa_max is not None else None
    while True:
        th = int(math.floor(theta * top / m))
        if th_max is not None:
            th = min(th, th_max)
        th0 = th
        if lim is not None and b_max * th / theta > lim:          # the biases cannot fit at this scale
            th = int(math.floor(lim * theta / b_max))
        if th < 1:
            raise QuantizeError(f"layer {fl.name}: threshold {theta} is below one weight step "
                                f"(max |w| = {m:.3g}, |bias| {b_max:.3g}); the integer threshold would be 0")
        while True:
            c = 0
            if dsr_alpha != 1:
                th, c = alpha_threshold(th, dsr_alpha, k, fl.name)
            s = th / theta
            B = np.rint(fl.bias * s).astype(np.int64) if bias_step == 1 else _round_to(fl.bias * s, bias_step)
            if c:                               # (1 - lam) c per step: c - c / 2^k (IF: 0)
                B = B + (c - (c >> k) if k is not None else int(round(c * D / 4096)))   # non-dyadic: not exact anyway
            grid = (0, None) if lim is None else bias_grid(target, F, int(np.abs(B).max(initial=0)))
            if grid is not None and (grid[0] == 0 or not c):
                break
            if th <= 1:
                raise QuantizeError(f"layer {fl.name}: no threshold >= 1 keeps its biases (|b| {b_max:.3g}) "
                                    f"within {target.name}'s exact bias range at F = {F}")
            th -= 1
        z = grid[0]
        if z:                                   # the exponent's spare bits: B a multiple of 2^z
            B = _round_to(B, 1 << z)
        fit = {"bias_zero_bits": int(z), "threshold_lowered_for_bias": [th0, th] if th != th0 else None}
        W = _round_to(w_eff * s, step)
        FW = [_round_to(f.weight * s, step) for f in fbs]
        bound = layer_current_bound(W, B, FW, x_max if i == 0 else 1, in_signed and i == 0)
        owed = th << F if fl.reset == RESET_SUBTRACT_UNDECAYED else 0     # state_bound.owed_subtraction
        if du != DU_NONE:                       # two-state: V fed by the carried current (state_bound.py)
            syn = layer_current_bound(W, np.zeros(1, np.int64), FW, x_max if i == 0 else 1, in_signed and i == 0)
            worst = two_state_bound(syn, int(np.abs(B).max(initial=0)), F, du, D, T, abs(c << F) + owed)
        else:
            worst = (bound << F) * geo + (abs(c) << F) + owed
        fits = worst <= STATE_MAX and (th << F) <= STATE_MAX
        if fits or top // 2 < MIN_WEIGHT_LEVELS * step:
            return W, B, FW, th, s, lowered_bits(wmax, top, lowered, fine), c << F, fit
        need = max(worst, th << F)
        top, lowered = lower_top(top, step, STATE_MAX / float(need), fine), lowered + 1


def _readout_layer(ro: FloatLayer, wmax: int, step: int, F: int, D: int, T: int, bias_lim=None,
                   fine: bool = False) -> tuple:
    """(W, B, scale, bits lowered) of the readout whose state R << F (leak D) must fit 24 bits and whose
    biases must be exact on the target (|B| <= bias_lim; the argmax does not depend on the scale)."""
    m = float(np.abs(ro.weight).max(initial=0.0)) or 1.0
    b_max = float(np.abs(ro.bias).max(initial=0.0))
    top, lowered = wmax, 0
    while True:
        s = top / m
        if bias_lim is not None and b_max * s > bias_lim:
            s = bias_lim / b_max
        W, B = _round_to(ro.weight * s, step), np.rint(ro.bias * s).astype(np.int64)
        need = state_bound(layer_current_bound(W, B), F, D, T)
        if need <= STATE_MAX or top // 2 < MIN_WEIGHT_LEVELS * step:
            return W, B, s, lowered_bits(wmax, top, lowered, fine)
        top, lowered = lower_top(top, step, STATE_MAX / float(need), fine), lowered + 1


def lower_top(top: int, step: int, room: float, fine: bool) -> int:
    """The next largest weight to try when the worst case does not fit (room = limit / need < 1): half of
    `top` (one synapse word: the precision lowered a bit at a time), or with two words (`fine`) the largest
    grid value the worst case scales into (the bound is about linear in the weights; at least one step less,
    never below half), so the second word's extra bits are not halved away."""
    half = (top // 2 // step) * step
    if not fine:
        return half
    return max(min(int(top * room) // step * step, top - step), half)


def lowered_bits(wmax: int, top: int, halvings: int, fine: bool):
    """precision_lowered_by_bits: halvings (one word), log2(wmax / top) to 0.01 bit (two words, lower_top)."""
    return round(math.log2(wmax / top), 2) if fine else halvings


def _layer_du(fl: FloatLayer) -> int:
    """The IR current decay of a spiking FloatLayer (module docstring: synaptic current), or a one-line refusal."""
    a = float(fl.syn_decay)
    if not a:
        return DU_NONE
    du = du_for(a)
    if du is None:
        raise QuantizeError(f"layer {fl.name}: synaptic current decay alpha = {a:g} has no exact 12-bit current "
                            f"decay on Loihi ((4095 - du) / 4096 = alpha needs alpha * 4096 to be an integer)")
    return du


def _synaptic_bias(fl: FloatLayer, du: int, F: int, k: Optional[int], T: int, dsr_alpha: Fraction) -> tuple:
    """(the float layer to quantize, its bias grid 2^g) of a spiking layer: a bias inside the synaptic current
    becomes the V bias c = b / (1 - alpha) on the grid 2^g of the module docstring (u0 = -(B << F) follows from
    the quantized B); any other layer is returned unchanged with grid 1."""
    if du == DU_NONE or not np.any(np.asarray(fl.bias) != 0):
        return fl, 1
    a = float(fl.syn_decay)
    if dsr_alpha != 1:
        raise QuantizeError(f"layer {fl.name}: a bias inside the synaptic current (alpha = {a:g}) with DSR firing "
                            f"(dsr_alpha = {float(dsr_alpha):g}) has no exact form: the firing shift adds its own bias "
                            f"that the initial current would not cancel")
    j = current_decay_bits(du)
    G = max(j * T, j + (k or 0) * (T - 1))
    return replace(fl, bias=np.asarray(fl.bias, dtype=np.float64) / (1.0 - a)), 1 << max(0, G - F)


def quantize(layers: list, feedback: list, *, T: int, lam: float, theta: float, target,
             input_scale: float, input_bits: int, input_signed: bool, input_exact: bool,
             meta: dict = None, readout_leaks: bool = False, dsr_alpha: float = 1.0,
             frac_bits: Optional[int] = None, weight_words: int = 1) -> tuple:
    """(Graph, QuantizeReport) of the folded float network on `target` (an hw_targets.Target).
    weight_words: synapse words per weight of every layer (weight_grid; 2 only where the target holds it).
    readout_leaks: the trained readout is sum_t lam^(T-t) o[t] (SAF-F), deployed leaking with D.
    dsr_alpha: DSR's firing fraction: fire at dsr_alpha*theta, deployed as an initial potential plus bias
    (module docstring, "alpha firing").
    frac_bits: F chosen by the caller (export --approximate), instead of the exact-leak F."""
    dsr_alpha_q = Fraction(dsr_alpha).limit_denominator(1 << 12)
    if not (0 < dsr_alpha_q <= 1):
        raise QuantizeError(f"dsr_alpha must be in (0, 1], got {dsr_alpha}")
    check_count("T", T, 1, QuantizeError)
    if not (0 < lam <= 1):
        raise QuantizeError(f"lam must be in (0, 1], got {lam}")
    D = decay_for(lam)
    if D >= 1 << target.decay_bits:
        raise QuantizeError(f"lam {lam} needs decay {D}, beyond the {target.decay_bits}-bit decay of {target.name}")
    if D == 1 << 12 or (4096 - D) == 0:
        raise QuantizeError(f"lam {lam} rounds to 0 on a 12-bit decay; {target.name} cannot represent it")
    lam_q = (4096 - D) / 4096
    k = dyadic_exponent(lam_q)
    n_sp = len(layers) - 1
    dus = [_layer_du(fl) for fl in layers[:n_sp]]
    j_cur = max([current_decay_bits(du) for du in dus] + [0])      # the synaptic currents' decay exponent
    F = (max(int(target.frac_bits), k * (T - 1) if k is not None else 0, j_cur * (T - 1)) if frac_bits is None
         else int(frac_bits))
    if (1 << F) > STATE_MAX >> 4:
        raise QuantizeError(f"T={T} with lam={lam} needs F={F} fractional bits for an exact leak; the 24-bit "
                            f"state then has fewer than 4 bits left for the threshold (use T <= "
                            f"{19 // k + 1} or lam closer to 1)")
    geo = geometric_sum(D, T)
    wmax, step = weight_grid(target, weight_words)
    x_max = (1 << (input_bits - 1)) if input_signed else (1 << input_bits) - 1
    th_max = target.threshold_mantissa_max
    out, rep = [], QuantizeReport(input_scale, input_bits, input_exact, F)
    fb_q = [None] * len(feedback)
    net_grid = _NetGrid(theta, wmax, step, input_scale, x_max, F, geo, th_max, input_signed, dsr_alpha_q, k, D, target,
                        T, weight_words > 1)
    for i, fl in enumerate(layers[:n_sp]):
        fbs = [(j, f) for j, f in enumerate(feedback) if f.dst == i]
        fl_q, bias_step = _synaptic_bias(fl, dus[i], F, k, T, dsr_alpha_q)
        W, B, FW, th, s, lowered, v0, fit = _spiking_layer(i, fl_q, [f for _, f in fbs], net_grid, dus[i], bias_step)
        u0 = -(B << F) if fl_q is not fl else None      # the bias inside the current (module docstring)
        for (j, f), w in zip(fbs, FW):
            fb_q[j] = Feedback(src=f.src, dst=f.dst, kind=f.kind, weight=w, stride=f.stride, padding=f.padding)
        out.append(Layer(name=fl.name, kind=fl.kind, weight=W, bias=B, in_shape=fl.in_shape,
                         out_shape=fl.out_shape, threshold=th, stride=fl.stride, padding=fl.padding,
                         scale=s, frac_bits=F, v0=int(v0), reset=fl.reset, compare=fl.compare, du=dus[i],
                         weight_words=int(weight_words), u0=u0))
        syn_bias = {} if u0 is None else {"initial_current_max": int(np.abs(u0).max(initial=0)),
                                          "initial_current_bias_step": int(bias_step)}
        rep.layers.append({"name": fl.name, "scale": s, "threshold": th, "v0": int(v0), **syn_bias,
                           "weight_max": int(np.abs(W).max()),
                           "bias_max": int(np.abs(B).max(initial=0)), "weight_step": step,
                           "precision_lowered_by_bits": lowered, **fit})
    ro = layers[-1]
    D_r = D if readout_leaks else 0
    lim = bias_limits(target, F)[0][1] if target.bias_mantissa_max is not None else None
    W, B, s, lowered = _readout_layer(ro, wmax, step, F if D_r else 0, D_r, T, lim, weight_words > 1)
    out.append(Layer(name=ro.name, kind="readout", weight=W, bias=B, in_shape=ro.in_shape,
                     out_shape=ro.out_shape, scale=s, frac_bits=F, decay=D_r, weight_words=int(weight_words)))
    rep.layers.append({"name": ro.name, "scale": s, "threshold": None, "weight_max": int(np.abs(W).max()),
                       "bias_max": int(np.abs(B).max(initial=0)), "weight_step": step,
                       "precision_lowered_by_bits": lowered, "decay": D_r})
    g = Graph(layers=out, T=int(T), lam=float(lam), decay=D, input_shape=tuple(layers[0].in_shape),
              input_scale=float(input_scale), input_bits=int(input_bits), input_signed=bool(input_signed),
              feedback=[f for f in fb_q if f is not None], target=target.name, meta=dict(meta or {}))
    return g, rep
