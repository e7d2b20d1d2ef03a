"""The SAF accumulation (training) form on the quantized integer weights, in exact arithmetic.

A second code path for the same network, independent of the LIF form (deploy/backends/emulator.py):
nothing here carries a membrane potential, truncates, or saturates. Per spiking layer
(SAF paper Eq. 4 and 5, with the typo fixes of docs/design.md#the-saf-form), with lam = graph.lam_q = (4096 - D) / 4096:

    c[t]    = sum_{k=0}^{t-1} lam^k                       (c[1] = 1)
    a_in[t] = lam a_in[t-1] + x_q[t]  (layer 1; = c[t] * x_q for constant input)
              or  a_{l-1}[t]  (the forwarded accumulation)
    U[t]    = W a_in[t] + B c[t]  (+ W_fb a_src[t-1] for each feedback edge, a_src[0] = 0)
    a[t]    = lam a[t-1] + H(U[t] - TH (lam a[t-1] + 1))       H(0) = 1 (fire at equality)
    s[t]    = a[t] - lam a[t-1]                           (the spike, 0 or 1)
    R       = sum_t (W_o s_N[t] + B_o)                    (non-leaking readout, D_r = 0)
    R       = (W_o a_N[T] + B_o c[T]) << F_r              (readout leaking with lam: D_r = D)

A sum-pooled layer (Layer.in_pool = k) applies W to sum_pool_k(a_in) (and the readout to
sum_pool_k(a_N)): pooling is linear, so it is the accumulation of the pooled input.

Per-layer modes (Layer.compare, Layer.reset; export/ir.py). The compare is H's: H(0) = 1 for ">=", 0 for
">" (scale-invariant, so exact here as well). The reset changes only how much charge the layer has given
back, never the accumulations a, a_in, U (linear in the spikes, so the next layer's input is W a[t]
whatever the reset). Unrolling each reset of the LIF form over the accumulated input U[t]:

    subtract            u[t] = U[t] - TH lam a[t-1]             (above: fire on U[t] - TH (lam a[t-1] + 1))
    subtract-undecayed  u[t] = U[t] - TH a[t-1]                 (the subtractions decay one step less:
                                                                 sum_k lam^(t-1-k) TH s[k] = TH a[t-1])
    zero                u[t] = U[t] - Z[t]                      (the charge accumulated up to the last spike
                        Z[t] = lam (Z[t-1] + s[t-1] (U[t-1] - Z[t-1])),  Z[1] = 0, is what a reset to 0 drops:
                        after a spike at r, u[t] = sum_{k=r+1}^{t} lam^(t-k) I[k] = U[t] - lam^(t-r) U[r])

and s[t] = H(u[t] - TH). No potential is carried or truncated: Z is a decayed copy of U at the last spike,
kept exactly (S Z is an integer for the same reason S U is: a polynomial in lam of degree <= t-2 at step t).
This is a different formulation from the LIF form's (no V, no clip, no truncating decay); the LIF forms equal
it under the certificate's conditions, as for the default modes (u, and so every spike, is the same
rational number in both).

Two-state layers (Layer.du < 4095: the spec's synaptic current, syn[t] = alpha syn[t-1] + W s_in[t] + W_fb s_src[t-1],
alpha = (4095 - du) / 4096 = pc / qc). The LIF form feeds V with U[t] = sum_{t'<=t} alpha^(t-t') w[t'] (w the
synaptic input per step), so its accumulated input is sum_t' lam^(t-t') U[t'] = (k_lam * k_alpha * w)[t], two
causal exponential kernels convolved with w. Convolution commutes, so this is k_alpha * (k_lam * w): the
current's kernel applied to the SAF form's own accumulated synaptic input U_syn[t] = W a_in[t] + W_fb a_src[t-1]:
    X[t] = alpha X[t-1] + U_syn[t],   U[t] = X[t] + B c[t]      (the bias enters V, not the current: export/ir.py)
and everything else (resets, compare) is unchanged. X is a polynomial in lam and alpha of degree <= t-1; with
S = Q^(T-1), Q the largest of the (power-of-two) denominators q, qc, every S X is an integer (checked).

Initial current (Layer.u0, a two-state layer's U[0] = u0 in state units: a bias inside the synaptic current,
export/quantize.py). The LIF form's current gains u0's decayed copy alpha^t u0, so V's accumulated input gains
    P[t] = alpha P[t-1],  P[0] = u0 / 2^F,      Y[t] = lam Y[t-1] + P[t],  Y[0] = 0,      U[t] += Y[t]
(its own two recurrences, kept exactly: nothing truncates). S P[t] and S Y[t] are integers when
S u0 / 2^F is a multiple of Q^T (every alpha^t' lam^(t-t') then divides out); the scale gains the power-of-two
factor E_u that makes it so for every layer's u0 (1 for the quantizer's u0, a multiple of 2^(F + G), checked).

Initial potential (Layer.v0, V'[0] = v0 in state units): the LIF potential unrolls to
u[t] = lam^t v0 + U[t] - TH lam a[t-1] (the reset is subtractive, so v0 only decays), so U[t] gains
lam^t v0 / 2^F. With any v0 the scale S gains a factor q 2^Fmax (E below), which keeps
S lam^t v0 / 2^F = q^(T-t) p^t v0 2^(Fmax - F) an integer for t <= T.

The leaking readout is the SAF form's own: sum_t lam^(T-t) (W_o s_N[t] + B_o) telescopes to
W_o a_N[T] + B_o c[T] (s[t] = a[t] - lam a[t-1]), what SAF-F's loss sees times c[T]. In units of
the readout state (<< F_r) it is (W_o A_N + B_o C) 2^F_r / S, floored when not an integer
(info["readout_exact"] says whether it always was: it is when F_r >= k (T - 1)).

Exactness. Write lam = p / q in lowest terms; q = 2^j since lam_q has denominator 4096 (for a
dyadic lam = 2^-k: p = 1, q = 2^k). Every accumulation is a polynomial in lam of degree <= t-1 with
integer coefficients, so scaled by S = q^(T-1) it is an integer. We keep A = S a, C = S c and
SU = S U as integers; the leak p * A[t-1] / q is an exact division for t <= T because
A[t-1] = (a[t-1] q^(t-2)) q^(T-t+1) and T - t + 1 >= 1. The comparison H is scale-invariant, so
the spikes are exactly those of the real-valued SAF form with lam = lam_q.

No overflow. `_bounds` bounds every intermediate in Python ints: |a| <= c[T] <= T, so |A| <= C[T];
|SU| <= (max_row sum |W| * max|a_in| + max|B| + max_row sum |W_fb|) * C[T] (|a_in| <= max|x_q| C[T]
on layer 1, C[T] elsewhere); the threshold term TH * (p A / q + S) <= TH * (C[T] + S); the leak
product p * A <= p * C[T]; potentials SU << F. If the largest is below 2^30 we compute in int32, below 2^62 in int64
(this holds for dyadic lam on the usual T: S = 2^(k(T-1))), else in Python ints (object arrays),
which cannot overflow (the non-dyadic case: S = 2048^(T-1) for lam_q = 1843/2048 already exceeds
2^62 at T = 7).

Potentials: u[t] = U[t] - TH lam a[t-1] in units of the LIF state (times 2^F): u_lif = SU_u 2^F / S,
floored when not an integer (info["potentials_exact"] says whether every one was an integer; it is
when F >= k (T-1) for dyadic lam). They are not saturated: where the LIF state saturates, the two
forms differ, and that is what the comparison must report.

How it is computed (the algebra above, batched over samples, no per-sample loop). The products W a_in run as
exact float BLAS (saf_int_linear.py): float32 when the layer's largest row L1 norm times the derived bound on
|S a_in| (x_max C[T] on layer 1, C[T] elsewhere, the readout's T or C[T]) is below 2^24, float64 limbs of
|S a_in| below 2^53 / R otherwise, recombined in int64 or Python ints; the data is checked against the bound.
Layer 1 on constant input uses W (S x c[t]) = C[t] (W x), one product. A convolution is one 2-D GEMM on
im2col rows read as a strided view of the channels-last input. The elementwise recurrences run in int32 when
the run's bound is below 2^30 (half the memory traffic of int64; the linear maps refuse an int32 input whose
bound could pass 2^31). Without feedback the schedule is
layer-major: a layer's recurrences (saf_int_layer.py) run over all T steps, then the next layer's W takes every
step's accumulations in one product; with feedback (a_src[t-1] enters at t) it is step-major.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from math import gcd
from typing import Optional

import numpy as np

from saf.export.ir import DECAY_ONE, Graph, dyadic_exponent
from saf.export.proof.saf_int_layer import Arith, LayerState, current_ratio, exact_div
from saf.export.proof.saf_int_linear import ExactLinear, layer_linear
from saf.export.result import BackendResult
from saf.core.neuron_modes import ALL_MODES, RESET_ZERO

INT64_SAFE = 1 << 62
INT32_SAFE = 1 << 30           # below this bound the recurrences run in int32 (half the memory traffic)
BATCH_BYTES = 1 << 27          # samples per batch: about this many bytes of accumulations per layer
# Every layer's own compare and reset (above), every combination: what this form declares for the
# certificate's convention row.
MODES = frozenset(ALL_MODES)


def _ratio(graph: Graph) -> tuple:
    """lam_q = p / q in lowest terms."""
    m = DECAY_ONE - int(graph.decay)
    g = gcd(m, DECAY_ONE)
    return m // g, DECAY_ONE // g


def _scale_base(graph: Graph, q: int) -> int:
    """Q: the largest of lam's denominator q and every two-state layer's qc (all powers of two, so each divides
    Q); S = Q^(T-1) makes every accumulation an integer (module docstring)."""
    return max([q] + [current_ratio(l)[1] for l in graph.spiking_layers if l.two_state])


def _bounds(graph: Graph, lin: list, fb: list, x_max: int, p: int, q: int) -> int:
    """Largest magnitude of any intermediate (see the module docstring), in Python ints."""
    T = graph.T
    S = _scale(graph, q)
    C = 0
    for _ in range(T):
        C = (p * C) // q + S                                     # C[T] = S c[T]
    worst = p * C
    for li, layer in enumerate(graph.spiking_layers):
        a_in = x_max * C if li == 0 else C
        fb_rows = sum(f.row_abs for _, f in fb[li])
        bmax = int(np.abs(layer.bias).max(initial=0))
        syn = lin[li].row_abs * a_in + fb_rows * C
        if layer.two_state:                                      # |X| <= sum_j alpha^j max|U_syn| <= T max|U_syn|
            syn = syn * T
        su = syn + bmax * C + abs(int(layer.v0)) * S
        if layer.has_initial_current:                            # |S Y| <= T S max|u0| / 2^F (and |S P| below it)
            su = su + ((T * S * int(np.abs(layer.full_initial_current()).max())) >> int(layer.frac_bits)) + 1
        if layer.reset == RESET_ZERO:                            # S U - S Z, |S Z| <= max |S U|
            su = 2 * su
        th = int(layer.threshold) * (C + S)
        worst = max(worst, (su + th) << layer.frac_bits, p * C)
    ro = graph.readout
    if ro.decay:                                                 # (W_o A_N + B_o C) << F_r
        ro_abs = int(np.abs(ro.weight).sum(1).max(initial=0)) * ro.pool_gain
        worst = max(worst, (ro_abs * C + int(np.abs(ro.bias).max(initial=0)) * C) << ro.readout_shift)
    return worst


def _scale(graph: Graph, q: int) -> int:
    """S = Q^(T-1) E_v0 E_u (module docstring)."""
    return _scale_base(graph, q) ** (int(graph.T) - 1) * _v0_factor(graph, q) * _u0_factor(graph, q)


def _v0_factor(graph: Graph, q: int) -> int:
    """E = q 2^Fmax when a layer has an initial potential (see the module docstring), else 1."""
    if not any(int(l.v0) for l in graph.spiking_layers):
        return 1
    return q << max(int(l.frac_bits) for l in graph.spiking_layers)


def _u0_factor(graph: Graph, q: int) -> int:
    """E_u: the least power of two with S0 E_u u0 / 2^F a multiple of Q^T for every layer's u0 (S0 = Q^(T-1) E_v0;
    module docstring), 1 without initial currents."""
    Q, T = _scale_base(graph, q), int(graph.T)
    base = Q ** (T - 1) * _v0_factor(graph, q)
    e = 0
    for l in graph.spiking_layers:
        if not l.has_initial_current:
            continue
        u = np.asarray(l.full_initial_current(), dtype=object)
        g = 0
        for v in u[u != 0]:
            g = gcd(g, abs(int(v)))
        need = Q ** T << int(l.frac_bits)                     # S u0 / 2^F divisible by Q^T
        while (base << e) * g % need:
            e += 1
    return 1 << e




@dataclass
class _Net:
    """What every batch of one run shares: the layers, the exact arithmetic, the linear maps with the derived bound
    on what each reads (a_max), and C[t] = S c[t] for t = 1..T (Python ints)."""
    graph: Graph
    ar: Arith
    lin: list
    fb: list
    a_max: list
    C: list
    layer_major: bool


@dataclass
class _Out:
    """The run's outputs, filled batch by batch."""
    readout: np.ndarray
    spikes: Optional[list]
    pots: Optional[list]
    pots_exact: bool = True
    ro_exact: bool = True


def _first_sums(net: _Net, fr: np.ndarray, varying: bool):
    """t -> S U_syn[t] of the first layer, [b, n_out]. Constant input: W (x c[t]) S = C[t] (W x), W x once.
    Frames: S a_in[t] = lam S a_in[t-1] + S x[t] (exact as A's leak), then W on every step's at once."""
    ar, lin = net.ar, net.lin[0]
    if not varying:
        wx = lin(fr[:, 0], net.a_max[0] // net.C[-1]).astype(ar.dt)
        return lambda t: wx * net.C[t]
    b, T = fr.shape[0], ar.T
    acc = np.zeros((T, b, fr.shape[2]), dtype=ar.dt)                 # time-major: acc[t] is contiguous
    prev = np.zeros((b, fr.shape[2]), dtype=ar.dt)
    for t in range(T):
        prev = acc[t] = exact_div(ar.p * prev, ar.q, "inexact input accumulation", t) + fr[:, t].astype(ar.dt) * ar.S
    su = lin(acc.reshape(T * b, -1), net.a_max[0]).reshape(T, b, -1)
    return lambda t: su[t]


def _record(out: _Out, li: int, sl: slice, t: int, H: np.ndarray, st: LayerState) -> None:
    if out.spikes is not None:
        out.spikes[li][sl, t] = H
    if out.pots is not None:
        v, ok = st.potential()
        out.pots[li][sl, t] = v
        out.pots_exact = out.pots_exact and ok


def layer_major_run(net: _Net, fr: np.ndarray, varying: bool, out: _Out, sl: slice) -> tuple:
    """Without feedback: each layer over all T steps, then the next layer's W on all its accumulations at once."""
    sp, ar = net.graph.spiking_layers, net.ar
    b, su_at, counts = fr.shape[0], _first_sums(net, fr, varying), 0
    for li, layer in enumerate(sp):
        st = LayerState(layer, b, ar)
        acc = np.empty((ar.T, b, layer.n_out), dtype=ar.dt) if li + 1 < len(sp) else None   # time-major
        for t in range(ar.T):
            into = acc[t] if acc is not None and ar.dt is not object else None
            _record(out, li, sl, t, st.step(t, su_at(t), net.C[t], into), st)
            if acc is None:
                counts = counts + st.spike_count()
            elif into is None:
                acc[t] = st.A
        if acc is not None:
            su = net.lin[li + 1](acc.reshape(ar.T * b, -1), net.a_max[li + 1]).reshape(ar.T, b, -1)
            su_at = (lambda s: lambda t: s[t])(su)
    return st, counts


def step_major_run(net: _Net, fr: np.ndarray, varying: bool, out: _Out, sl: slice) -> tuple:
    """With feedback (a_src[t-1] feeds a layer at t): every layer one step at a time."""
    sp, ar = net.graph.spiking_layers, net.ar
    b, first, counts = fr.shape[0], _first_sums(net, fr, varying), 0
    states = [LayerState(l, b, ar) for l in sp]
    for t in range(ar.T):
        old = [s.A for s in states]                                   # S a[t-1] of every layer
        for li, st in enumerate(states):
            su = first(t) if li == 0 else net.lin[li](states[li - 1].A, net.a_max[li])
            for src, f in net.fb[li]:
                su = su + f(old[src], net.C[-1])
            _record(out, li, sl, t, st.step(t, su, net.C[t]), st)
        counts = counts + states[-1].spike_count()
    return states[-1], counts


def _readout(net: _Net, last: LayerState, counts: np.ndarray, out: _Out, sl: slice) -> None:
    """R = sum_t (W_o s_N[t] + B_o), or the leaking readout (W_o A_N + B_o C) 2^F_r / S floored."""
    ro, ar = net.graph.readout, net.ar
    bias = ro.full_bias().astype(ar.dt)
    if not ro.decay:
        out.readout[sl] = net.lin[-1](counts, net.a_max[-1]) + ar.T * ro.full_bias()
        return
    wide = np.int64 if ar.dt is not object else object               # the shift may pass int32
    num = (net.lin[-1](last.A, net.C[-1]).astype(wide) + bias.astype(wide) * net.C[-1]) * (1 << ro.readout_shift)
    val = num // ar.S
    out.ro_exact = out.ro_exact and not np.any(val * ar.S != num)
    out.readout[sl] = np.asarray(val, dtype=np.int64)


def _net(graph: Graph, x_max: int) -> tuple:
    """The run's shared record and its overflow bound (checks the graph's shape first)."""
    sp = graph.spiking_layers
    if any(not l.spiking for l in graph.layers[:-1]) or graph.layers[-1].spiking:
        raise ValueError("graph must list its spiking layers first and end with the readout")
    if graph.readout.decay not in (0, graph.decay):
        raise ValueError(f"readout decay {graph.readout.decay} must be 0 or the network's {graph.decay}")
    p, q = _ratio(graph)
    E = _v0_factor(graph, q)
    if any(l.two_state for l in sp) and E != 1:
        raise ValueError("saf-int: a two-state layer with an initial potential (v0) has no SAF form here")
    lin = [layer_linear(l) for l in graph.layers]
    fb = [[] for _ in sp]
    for f in graph.feedback:
        if not (0 <= f.dst <= f.src < len(sp)):
            raise ValueError(f"feedback {f.src}->{f.dst} must join spiking layers with dst <= src")
        fb[f.dst].append((f.src, ExactLinear(f.kind, f.weight, sp[f.src].out_shape, f.stride, f.padding)))
    bound = _bounds(graph, lin, fb, x_max, p, q)
    S, C = _scale(graph, q), [0]
    for _ in range(int(graph.T)):
        C.append((p * C[-1]) // q + S)
    dt = object if bound >= INT64_SAFE else np.int32 if bound < INT32_SAFE else np.int64
    ar = Arith(p, q, S, int(graph.T), E, max(int(l.frac_bits) for l in sp), dt)
    a_max = [x_max * C[-1]] + [C[-1]] * (len(sp) - 1)                # |S a_in| per layer (module docstring)
    a_max.append(C[-1] if graph.readout.decay else int(graph.T))     # the readout reads A_N, or spike counts
    return _Net(graph, ar, lin, fb, a_max, C[1:], not graph.feedback), bound


def run_saf_int(graph: Graph, xq: np.ndarray, record_spikes: bool = True, batch_size: int = 1024,
                record_potentials: bool = False) -> BackendResult:
    """The SAF form in exact integer arithmetic on xq [N, *input_shape] or, one frame per step,
    [N, T, *input_shape] (backend "saf-int")."""
    t0 = time.perf_counter()
    varying = np.asarray(xq).ndim == len(graph.input_shape) + 2
    frames = graph.input_frames(xq)                                   # [N, T, n_in]
    x_max = max(graph.input_max, int(np.abs(frames if varying else frames[:, 0]).max(initial=0)))
    net, bound = _net(graph, x_max)
    n, sp, T = frames.shape[0], graph.spiking_layers, net.ar.T
    out = _Out(np.zeros((n, graph.readout.n_out), dtype=np.int64),
               [np.zeros((n, T, l.n_out), dtype=bool) for l in sp] if record_spikes else None,
               [np.zeros((n, T, l.n_out), dtype=np.int64) for l in sp] if record_potentials else None)
    widest = max(max(l.n_out for l in sp), int(np.prod(graph.input_shape)))
    step = max(1, min(int(batch_size), BATCH_BYTES // (16 * T * widest)))
    run = layer_major_run if net.layer_major else step_major_run
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        last, counts = run(net, frames[sl], varying, out, sl)
        _readout(net, last, counts, out, sl)
    info = {"lam_q": (net.ar.p, net.ar.q), "dyadic_k": dyadic_exponent(graph.lam_q), "scale": net.ar.S,
            "bound": bound, "arithmetic": "python-int" if net.ar.dt is object else np.dtype(net.ar.dt).name,
            "potentials_exact": out.pots_exact if out.pots is not None else None,
            "readout_leak": int(graph.readout.decay), "readout_exact": out.ro_exact,
            "schedule": "layer-major" if net.layer_major else "step-major",
            "float64_limbs": {l.name: lin.limb_count(a) for l, lin, a in zip(graph.layers, net.lin, net.a_max)}}
    return BackendResult(backend="saf-int", readout=out.readout, spikes=out.spikes, potentials=out.pots,
                         seconds=time.perf_counter() - t0, info=info)
