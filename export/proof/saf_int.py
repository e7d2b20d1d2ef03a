"""The SAF accumulation (training) form on the quantized integer weights, in exact arithmetic.

A second code path for the same network, independent of the LIF form (deploy/backends/emulator.py):
nothing here carries a membrane potential, truncates, or saturates. Per spiking layer
(SAF paper Eq. 4 and 5, with DESIGN.md's typo fixes), with lam = graph.lam_q = (4096 - D) / 4096:

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
product p * A <= p * C[T]; potentials SU << F. If the largest is below 2^62 we compute in int64
(this holds for dyadic lam on the usual T: S = 2^(k(T-1))), else in Python ints (object arrays),
which cannot overflow (the non-dyadic case: S = 2048^(T-1) for lam_q = 1843/2048 already exceeds
2^62 at T = 7).

Potentials: u[t] = U[t] - TH lam a[t-1] in units of the LIF state (times 2^F): u_lif = SU_u 2^F / S,
floored when not an integer (info["potentials_exact"] says whether every one was an integer; it is
when F >= k (T-1) for dyadic lam). They are not saturated: where the LIF state saturates, the two
forms differ, and that is what the comparison must report.
"""
from __future__ import annotations

import time
from math import gcd

import numpy as np

from saf.export.ir import DU_NONE, DECAY_ONE, Graph, dyadic_exponent
from saf.export.result import BackendResult
from saf.core.neuron_modes import ALL_MODES, COMPARE_GT, RESET_SUBTRACT_UNDECAYED, RESET_ZERO

INT64_SAFE = 1 << 62
# Every layer's own compare and reset (above), every combination: what this form declares for the
# certificate's convention row.
MODES = frozenset(ALL_MODES)


def _ratio(graph: Graph) -> tuple:
    """lam_q = p / q in lowest terms."""
    m = DECAY_ONE - int(graph.decay)
    g = gcd(m, DECAY_ONE)
    return m // g, DECAY_ONE // g


def _gather_index(in_shape: tuple, kh: int, kw: int, stride: int, pad: int) -> tuple:
    """im2col indices into a flattened [C*H*W + 1] input whose last entry is 0 (the padding).
    Returns (idx [P, C*kh*kw], P = Ho*Wo)."""
    c, h, w = in_shape
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (w + 2 * pad - kw) // stride + 1
    oi, oj = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    ci, ki, kj = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    r = oi.reshape(-1, 1) * stride - pad + ki.reshape(1, -1)         # P, K
    q = oj.reshape(-1, 1) * stride - pad + kj.reshape(1, -1)
    ch = np.broadcast_to(ci.reshape(1, -1), r.shape)
    inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
    idx = np.where(inside, (ch * h + np.clip(r, 0, h - 1)) * w + np.clip(q, 0, w - 1), c * h * w)
    return idx, ho * wo


class _Linear:
    """W applied to a batch of flattened accumulations [B, n_in] (int64 or object) -> [B, n_out]."""

    def __init__(self, kind: str, weight: np.ndarray, in_shape: tuple, stride: int, pad: int):
        self.kind = kind
        self.w = np.asarray(weight, dtype=np.int64)
        self.row_abs = int(np.abs(self.w.reshape(self.w.shape[0], -1)).sum(1).max(initial=0))
        if kind == "conv":
            co, _, kh, kw = self.w.shape
            self.idx, self.P = _gather_index(tuple(in_shape), kh, kw, stride, pad)
            self.wmat = self.w.reshape(co, -1).T                                       # K, Co

    def __call__(self, a: np.ndarray) -> np.ndarray:
        w = self.w if a.dtype != object else self.w.astype(object)
        if self.kind != "conv":
            return a @ w.T
        b = a.shape[0]
        ext = np.concatenate([a, np.zeros((b, 1), dtype=a.dtype)], axis=1)
        cols = ext[:, self.idx]                                                    # B, P, K
        out = cols @ (self.wmat if a.dtype != object else self.wmat.astype(object))  # B, P, Co
        return out.transpose(0, 2, 1).reshape(b, -1)


class _PooledLinear:
    """A layer's k x k sum pool (Layer.in_pool; linear, so it commutes with the accumulation:
    sum_pool(a_in) is the accumulation of the pooled input) followed by its _Linear."""

    def __init__(self, layer, lin: _Linear):
        self.layer, self.lin = layer, lin
        self.row_abs = lin.row_abs * layer.pool_gain

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self.lin(self.layer.pool_input(a))


def _layer_linear(l):
    lin = _Linear(l.kind if l.spiking else "dense", l.weight, l.syn_in_shape, l.stride, l.padding)
    return _PooledLinear(l, lin) if int(l.in_pool) > 1 else lin


def _current_ratio(layer) -> tuple:
    """A two-state layer's current decay (4095 - du) / 4096 = pc / qc in lowest terms."""
    m = DU_NONE - int(layer.du)
    g = gcd(m, DECAY_ONE)
    return m // g, DECAY_ONE // g


def _scale_base(graph: Graph, q: int) -> int:
    """Q: the largest of lam's denominator q and every two-state layer's qc (all powers of two, so each divides
    Q); S = Q^(T-1) makes every accumulation an integer (module docstring)."""
    return max([q] + [_current_ratio(l)[1] for l in graph.spiking_layers if l.two_state])


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


def _v0_term(layer, t: int, p: int, q: int, T: int, E: int, fmax: int) -> int:
    """S lam^t v0 / 2^F at step t (1-based), an exact Python int."""
    v0 = int(layer.v0)
    if not v0:
        return 0
    return q ** (T - t) * p ** t * (v0 << (fmax - int(layer.frac_bits)))


def _initial_p(layer, S: int, dt):
    """S P[0] = S u0 / 2^F per neuron (an exact integer by _u0_factor), or None without an initial current."""
    if not layer.has_initial_current:
        return None
    num = [int(v) * S for v in layer.full_initial_current()]
    f = int(layer.frac_bits)
    if any(v % (1 << f) for v in num):
        raise ArithmeticError(f"{layer.name}: S u0 / 2^F is not an integer (bug)")
    return np.array([v >> f for v in num], dtype=dt)


def run_saf_int(graph: Graph, xq: np.ndarray, record_spikes: bool = True, batch_size: int = 256,
                record_potentials: bool = False) -> BackendResult:
    """The SAF form in exact integer arithmetic on xq [N, *input_shape] or, one frame per step,
    [N, T, *input_shape] (backend "saf-int")."""

    t0 = time.perf_counter()
    sp = graph.spiking_layers
    if any(not l.spiking for l in graph.layers[:-1]) or graph.layers[-1].spiking:
        raise ValueError("graph must list its spiking layers first and end with the readout")
    p, q = _ratio(graph)
    T = graph.T
    E = _v0_factor(graph, q)
    fmax = max(int(l.frac_bits) for l in sp)
    if any(l.two_state for l in sp) and E != 1:
        raise ValueError("saf-int: a two-state layer with an initial potential (v0) has no SAF form here")
    S = _scale(graph, q)
    lin = [_layer_linear(l) for l in graph.layers]
    bias = [l.full_bias() for l in graph.layers]
    fb = [[] for _ in sp]
    for f in graph.feedback:
        if not (0 <= f.dst <= f.src < len(sp)):
            raise ValueError(f"feedback {f.src}->{f.dst} must join spiking layers with dst <= src")
        fb[f.dst].append((f.src, _Linear(f.kind, f.weight, sp[f.src].out_shape, f.stride, f.padding)))
    x_max = graph.input_max
    varying = np.asarray(xq).ndim == len(graph.input_shape) + 2
    frames = graph.input_frames(xq)                                   # [N, T, n_in]
    n = frames.shape[0]
    xq = frames[:, 0]
    x_max = max(x_max, int(np.abs(frames if varying else xq).max(initial=0)))
    bound = _bounds(graph, lin, fb, x_max, p, q)
    dt = np.int64 if bound < INT64_SAFE else object

    if dt is object:
        bias = [b.astype(object) for b in bias]
    readout = np.zeros((n, graph.readout.n_out), dtype=np.int64)
    spikes = [np.zeros((n, T, l.n_out), dtype=bool) for l in sp] if record_spikes else None
    pots = [np.zeros((n, T, l.n_out), dtype=np.int64) for l in sp] if record_potentials else None
    pots_exact = ro_exact = True
    if graph.readout.decay not in (0, graph.decay):
        raise ValueError(f"readout decay {graph.readout.decay} must be 0 or the network's {graph.decay}")
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        b = sl.stop - sl.start
        x = xq[sl].astype(dt)
        Ain = np.zeros_like(x)                                   # S a_in[t-1] of layer 1 (time-varying)
        A = [np.zeros((b, l.n_out), dtype=dt) for l in sp]       # S a[t-1] per layer
        Z = [np.zeros((b, l.n_out), dtype=dt) for l in sp]       # S Z[t] per zero-reset layer (docstring)
        X = [np.zeros((b, l.n_out), dtype=dt) for l in sp]       # S X[t-1] per two-state layer (docstring)
        P = [_initial_p(l, S, dt) for l in sp]                   # S P[t-1], S Y[t-1]: the initial current
        Y = [np.zeros(l.n_out, dtype=dt) for l in sp]
        U_old = [None] * len(sp)                                 # S U[t-1] and s[t-1] of a zero-reset layer
        S_old = [None] * len(sp)
        counts = np.zeros((b, sp[-1].n_out), dtype=np.int64)
        C = 0                                                    # S c[t-1], a Python int
        for t in range(T):
            C = (p * C) // q + S
            old = list(A)                                        # a[t-1] of every layer
            if varying:                    # S a_in[t] = lam S a_in[t-1] + S x[t]; exact as A's leak
                pin = p * Ain
                Ain = pin // q + frames[sl, t].astype(dt) * S
                if np.any((pin // q) * q != pin):
                    raise ArithmeticError(f"inexact input accumulation at t={t + 1} (bug)")
                a_in = Ain
            else:
                a_in = x * C
            for li, layer in enumerate(sp):
                SU = lin[li](a_in)
                for src, f in fb[li]:
                    SU = SU + f(old[src])
                if layer.two_state:                              # S X[t] = alpha S X[t-1] + S U_syn[t]
                    pc, qc = _current_ratio(layer)
                    px = pc * X[li]
                    if np.any((px // qc) * qc != px):
                        raise ArithmeticError(f"{layer.name}: inexact current decay at t={t + 1} (bug)")
                    X[li] = SU = px // qc + SU
                if P[li] is not None:                            # S P[t] = alpha S P[t-1]; S Y[t] = lam S Y[t-1] + S P[t]
                    pc, qc = _current_ratio(layer)
                    pp, py = pc * P[li], p * Y[li]
                    if np.any((pp // qc) * qc != pp) or np.any((py // q) * q != py):
                        raise ArithmeticError(f"{layer.name}: inexact initial current at t={t + 1} (bug)")
                    P[li] = pp // qc
                    Y[li] = py // q + P[li]
                    SU = SU + Y[li]
                SU = SU + bias[li] * C
                v0t = _v0_term(layer, t + 1, p, q, T, E, fmax)
                if v0t:
                    SU = SU + (v0t if dt is object else np.int64(v0t))
                pa = p * old[li]
                lam_a = pa // q
                if np.any(lam_a * q != pa):
                    raise ArithmeticError(f"{layer.name}: inexact leak at t={t + 1} (bug)")
                th = int(layer.threshold)
                if layer.reset == RESET_ZERO:                    # S Z[t] = lam (S Z[t-1] + s[t-1] (S U[t-1] - S Z[t-1]))
                    if t:
                        pz = p * np.where(S_old[li], U_old[li], Z[li])
                        Z[li] = pz // q
                        if np.any(Z[li] * q != pz):
                            raise ArithmeticError(f"{layer.name}: inexact reset charge at t={t + 1} (bug)")
                    given = Z[li]                                # S (U - u): the charge the resets dropped
                elif layer.reset == RESET_SUBTRACT_UNDECAYED:
                    given = th * old[li]                         # S TH a[t-1]
                else:
                    given = th * lam_a                           # S TH lam a[t-1]
                over = SU - given - th * S                       # S (u - TH)
                H = np.asarray(over > 0 if layer.compare == COMPARE_GT else over >= 0, dtype=bool)
                if layer.reset == RESET_ZERO:
                    U_old[li], S_old[li] = SU, H
                A[li] = lam_a + H.astype(dt) * S
                if record_spikes:
                    spikes[li][sl, t] = H
                if pots is not None:
                    num = (SU - given) * (1 << layer.frac_bits)      # (S u) 2^F
                    val = num // S
                    pots_exact = pots_exact and not np.any(val * S != num)
                    pots[li][sl, t] = np.asarray(val, dtype=np.int64)
                a_in = A[li]
            # the spike s_N[t] = a[t] - lam a[t-1], recovered from the accumulations (exactly 0/1)
            sN = A[-1] - p * old[-1] // q
            s_bin = sN // S
            if np.any(s_bin * S != sN) or np.any((s_bin != 0) & (s_bin != 1)):
                raise ArithmeticError("accumulation does not give a binary spike (bug)")
            counts += s_bin.astype(np.int64)
        ro = graph.readout
        if not ro.decay:
            readout[sl] = ro.pool_input(counts) @ np.asarray(ro.weight, dtype=np.int64).T + T * bias[-1]
        else:                          # the accumulation itself: S (W_o a_N[T] + B_o c[T]), then << F_r / S
            w = np.asarray(ro.weight, dtype=np.int64).astype(dt)
            num = (ro.pool_input(A[-1]) @ w.T + bias[-1] * C) * (1 << ro.readout_shift)
            val = num // S
            ro_exact = ro_exact and not np.any(val * S != num)
            readout[sl] = np.asarray(val, dtype=np.int64)
    info = {"lam_q": (p, q), "dyadic_k": dyadic_exponent(graph.lam_q), "scale": S,
            "bound": bound, "arithmetic": "int64" if dt is np.int64 else "python-int",
            "potentials_exact": pots_exact if pots is not None else None,
            "readout_leak": int(graph.readout.decay), "readout_exact": ro_exact}
    return BackendResult(backend="saf-int", readout=readout, spikes=spikes, potentials=pots,
                         seconds=time.perf_counter() - t0, info=info)
