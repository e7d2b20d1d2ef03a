"""Exact event-driven simulation of a feed-forward net of FP's two-state neurons (docs/methods.md#fp-event-driven-simulation,
Alg. 1 corrected as in docs/methods.md#fp-algorithm-1).

State per neuron (I, V) at a common event time; between events the closed form of fp_kernel.propagate.
Within each interval between input events (and after the last one, up to t_sim) every neuron's
first upward threshold crossing is found exactly: V(tau) = A e^{-alpha tau} + B e^{-beta tau} has at
most one critical point tau_c, so the interval splits into at most two monotone pieces; a piece with
G = V - theta < 0 at its start and >= 0 at its end holds the crossing, found by a bracketed Newton
iteration (bisection fallback) to ~1 ulp. A neuron that fires is reset (V <- V - theta = 0, the
current keeps flowing) and searched again from its spike time: several spikes between two inputs
are found. All neurons of a layer are processed together (numpy over the layer).

Firing convention: at G >= 0, so a crossing exactly at an event time fires before that event's input
(V is continuous there) and a tangent touch (grazing, V' = 0) fires; the gradient then has L_ff ~ 0,
which fp_grad floors and counts.
"""
from __future__ import annotations

import numpy as np

from saf.train.methods.fp.kernel import critical_time, propagate
from saf.core.errors import SafError

MAX_SPIKES_PER_NEURON = 10_000      # per sample: a runaway (theta tiny, huge weights) is an error, not a hang
NEWTON_ITERS = 100


class SimulationError(SafError, RuntimeError):
    """The event simulation cannot proceed (a neuron fires without bound)."""


def _bracketed_root(alpha, beta, theta, I, V, lo, hi):
    """The root of G(tau) = V(tau) - theta in (lo, hi] with G(lo) < 0 <= G(hi), G monotone there
    (vectorized). Newton steps from the bracket, bisection when a step leaves it; returns the
    smallest tau found with G >= 0 (to within an ulp of the root)."""
    lo = lo.copy()
    hi = hi.copy()
    x = hi.copy()
    live = np.ones(x.shape, dtype=bool)            # per element: each stops on its own test, so a result
    eps = 4 * np.finfo(float).eps                  # never depends on the other elements of the batch
    for _ in range(NEWTON_ITERS):
        Ix, Vx = propagate(alpha, beta, I, V, x)
        g = Vx - theta
        up = live & (g >= 0)
        hi = np.where(up, np.minimum(hi, x), hi)
        lo = np.where(live & ~up, np.maximum(lo, x), lo)
        dg = Ix - beta * Vx                                  # dV/dtau
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = x - g / dg
        bad = ~np.isfinite(xn) | (xn <= lo) | (xn >= hi)
        xn = np.where(bad, 0.5 * (lo + hi), xn)
        stuck = live & (xn == x) & (g < 0)                   # the root is within an ulp above x
        hi = np.where(stuck, np.minimum(hi, np.nextafter(x, np.inf)), hi)
        live = live & ~((hi - lo) <= eps * np.maximum(hi, 1e-300)) & (xn != x)
        if not live.any():
            break
        x = np.where(live, xn, x)
    return hi


def first_crossing(alpha: float, beta: float, theta: float, I, V, dt):
    """For each neuron, starting from state (I, V) with V < theta, the first tau in (0, dt] with
    V(tau) >= theta (an upward crossing), np.inf where none."""
    I = np.asarray(I, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), I.shape)
    tc = critical_time(alpha, beta, I, V)
    inner = tc < dt
    tcc = np.where(inner, tc, dt)
    g_end = propagate(alpha, beta, I, V, dt)[1] - theta
    g_c = propagate(alpha, beta, I, V, tcc)[1] - theta
    first_piece = inner & (g_c >= 0)                   # rises to theta before the extremum
    second_piece = ~first_piece & (g_end >= 0)         # (no extremum inside, or after a minimum)
    has = first_piece | second_piece
    tau = np.full(I.shape, np.inf)
    if has.any():
        lo = np.where(first_piece, 0.0, np.where(inner, tcc, 0.0))[has]
        hi = np.where(first_piece, tcc, dt)[has]
        tau[has] = _bracketed_root(alpha, beta, theta, I[has], V[has], lo, hi)
    return tau


def simulate_layer_batch(alpha: float, beta: float, theta: float, t_sim: float, W: np.ndarray,
                         t_in: np.ndarray, j_in: np.ndarray, first_only: bool = False) -> tuple:
    """One layer for S samples at once. t_in [S, m] input spike times (np.inf = none; any order) from
    presynaptic neurons j_in [S, m]; W [n_out, n_in]. Every (sample, neuron) pair is an independent
    unit sharing its sample's input events; the pairs are processed together interval by interval.
    first_only: stop each neuron at its first spike (what the first-spike loss and readout need).
    Returns (sample, time, neuron) of all output spikes in [0, t_sim), sorted by sample, time, neuron."""
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    t_in = np.atleast_2d(np.asarray(t_in, dtype=np.float64))
    j_in = np.broadcast_to(np.asarray(j_in, dtype=np.int64), t_in.shape)
    S, m = t_in.shape
    order = np.argsort(t_in, axis=1, kind="stable")
    T = np.take_along_axis(t_in, order, axis=1)
    J = np.take_along_axis(j_in, order, axis=1)
    real = np.isfinite(T) & (T < t_sim)
    ends = np.concatenate([np.where(real, T, t_sim), np.full((S, 1), t_sim)], axis=1)
    I = np.zeros((S, n))
    V = np.zeros((S, n))
    now = np.zeros(S)
    done = np.zeros((S, n), dtype=bool)          # first_only: pairs that have fired
    count = np.zeros((S, n), dtype=np.int64)
    rec_s, rec_t, rec_i = [], [], []
    for k in range(m + 1):
        t1 = ends[:, k]
        strict = t1 >= t_sim                       # the horizon itself is excluded
        if np.any(t1 > now):
            st = np.broadcast_to(now[:, None], (S, n)).copy()    # each pair's own time in the interval
            act = (t1 > now)[:, None] & ~done
            ss, ii = np.nonzero(act)
            while ss.size:
                tau = first_crossing(alpha, beta, theta, I[ss, ii], V[ss, ii], t1[ss] - st[ss, ii])
                f = st[ss, ii] + tau
                fired = np.isfinite(tau) & ~(strict[ss] & (f >= t_sim))
                if not fired.any():
                    break
                ss, ii, f, tau = ss[fired], ii[fired], f[fired], tau[fired]
                rec_s.append(ss)
                rec_t.append(f)
                rec_i.append(ii)
                count[ss, ii] += 1
                if count[ss, ii].max() > MAX_SPIKES_PER_NEURON:
                    raise SimulationError(f"a neuron fired more than {MAX_SPIKES_PER_NEURON} times in one "
                                          f"sample (weights too large for theta {theta})")
                I[ss, ii] = I[ss, ii] * np.exp(-alpha * tau)
                V[ss, ii] = 0.0                      # V(f) = theta exactly, minus theta
                st[ss, ii] = f
                if first_only:
                    done[ss, ii] = True
                    break
            I, V = propagate(alpha, beta, I, V, t1[:, None] - st)
            now = t1.copy()
            if first_only and done.all():
                break
        if k < m:
            rk = real[:, k]
            if rk.any():
                I[rk] += W[:, J[rk, k]].T
    if not rec_t:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
    s_ = np.concatenate(rec_s)
    t_ = np.concatenate(rec_t)
    i_ = np.concatenate(rec_i)
    o = np.lexsort((i_, t_, s_))
    return s_[o], t_[o], i_[o]


def simulate_batch(alpha: float, beta: float, theta: float, t_sim: float, weights: list, t_in: np.ndarray,
                   first_only_last: bool = False) -> list:
    """A feed-forward net on S samples' input times t_in [S, n_in] (np.inf = no spike): per weight layer,
    (sample, time, neuron) of all its spikes sorted by sample then time (the last layer only up to each
    neuron's first spike when first_only_last)."""
    t_in = np.atleast_2d(np.asarray(t_in, dtype=np.float64))
    S = t_in.shape[0]
    tin, jin = t_in, np.broadcast_to(np.arange(t_in.shape[1]), t_in.shape)
    out = []
    for l, W in enumerate(weights):
        last = l == len(weights) - 1
        rec = simulate_layer_batch(alpha, beta, theta, t_sim, W, tin, jin, first_only=first_only_last and last)
        out.append(rec)
        if not last:
            tin, jin = _pad_by_sample(rec, S)
    return out


def _pad_by_sample(rec: tuple, S: int) -> tuple:
    """(sample, time, neuron) records -> [S, max count] times (np.inf padded) and neuron indices."""
    s, t, i = rec
    cnt = np.bincount(s, minlength=S)
    m = int(cnt.max()) if cnt.size else 0
    tin = np.full((S, max(m, 1)), np.inf)
    jin = np.zeros((S, max(m, 1)), dtype=np.int64)
    if s.size:
        start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        pos = np.arange(s.size) - start[s]
        tin[s, pos] = t
        jin[s, pos] = i
    return tin, jin


def simulate(alpha: float, beta: float, theta: float, t_sim: float, weights: list, t_in: np.ndarray) -> list:
    """One sample t_in [n_in]: per weight layer, (times, neuron) of all its spikes sorted by time."""
    return [(t, i) for _, t, i in simulate_batch(alpha, beta, theta, t_sim, weights, np.asarray(t_in)[None])]
