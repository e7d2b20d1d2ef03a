"""FP's exact spike-time gradient (docs/methods.md#fp-gradient): the implicit-function theorem on the firing-time
equations Phi_f(F, W) = V_i(f^-) - theta = 0, one per spike, in a causal order.

For one sample the system holds every hidden spike and each output neuron's first spike (later output
spikes influence nothing the loss sees), ordered layer by layer and by time within a layer: a
topological order of causality, so L = dPhi/dF is lower-triangular (Thm 4; in global time order too:
build_system(..., order="time")). Entries (h, h' from fp_kernel):

    L_ff = V_i'(f^-) = sum_j W_ji sum_{g<f} h'(f-g) + theta beta sum_{m<f own} e^{-beta(f-m)}   (> 0)
    L_fg = -W_ji h'(f-g)           presynaptic spike g < f (input spikes are constants, no column)
    L_fm = -theta beta e^{-beta(f-m)}    own earlier spike m
    P_f,(ji) = dPhi_f/dW_ji = y_ji(f) = sum_{g<f, g in F_j} h(f-g)    (weights into neuron i only)

Forward mode (the paper's Alg. 2): dF/dW row by row in order, dF_f = -(P_f + sum_{g<f} L_fg dF_g) / L_ff,
then dLoss/dW = c . dF, c = dLoss/dF (nonzero at output first spikes). Adjoint (not in the paper):
L^T lam = c by back-substitution, dLoss/dW = -lam . P: O(nnz(L)) instead of O(|F|^2 |W|).
Guard: a grazing crossing (L_ff below GRAZE_EPS, V' ~ 0 at the spike) would make 1/L_ff explode:
L_ff is floored at GRAZE_EPS and the event counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saf.train.methods.fp.kernel import h, h_prime

GRAZE_EPS = 1e-6               # floor of V'(f): |df/dW| stays below ~1e6 / |dPhi/dW|


@dataclass
class SpikeSystem:
    """The linear system of one sample's firing-time equations."""
    times: np.ndarray        # [K] spike times
    layer: np.ndarray        # [K] weight layer of the spiking neuron
    neuron: np.ndarray       # [K]
    L: np.ndarray            # [K, K] dPhi/dF (diagonal floored at GRAZE_EPS)
    P: np.ndarray            # [K, n_params] dPhi/dW, parameters = the weight matrices flattened row-major, in order
    out_first: np.ndarray    # [n_out] index of each output neuron's first spike in the system, -1 when silent
    grazing: int             # diagonal entries that were below GRAZE_EPS


def param_offsets(weights: list) -> list:
    off = [0]
    for w in weights:
        off.append(off[-1] + w.size)
    return off


def reset_block(theta: float, beta: float, tq: np.ndarray, iq: np.ndarray) -> np.ndarray:
    """E[q, m] = theta beta e^{-beta (t_q - t_m)} for an own earlier spike m of q's neuron, else 0
    (L_qm = -E[q, m]; the reset's share of L_qq is sum_m E[q, m])."""
    Dm = tq[:, None] - tq[None, :]
    own = (iq[:, None] == iq[None, :]) & (Dm > 0)
    return np.where(own, theta * beta * np.exp(-beta * np.where(own, Dm, 0.0)), 0.0)


def build_system(alpha: float, beta: float, theta: float, weights: list, t_in: np.ndarray, spikes: list,
                 prune: bool = True, order: str = "layer") -> SpikeSystem:
    """spikes: per weight layer (times, neuron) sorted by time (fp_sim.simulate; the last layer may
    hold only first spikes). prune: drop hidden spikes at or after the last output first spike (they
    cannot influence any first spike). order: "layer" (layer, then time) or "time" (global time)."""
    t_in = np.asarray(t_in, dtype=np.float64)
    nL = len(weights)
    n_out = weights[-1].shape[0]
    t_last, i_last = spikes[-1]
    first_t = np.full(n_out, np.inf)
    np.minimum.at(first_t, i_last, t_last)
    keep_last = np.zeros(t_last.shape[0], dtype=bool)
    for k in range(n_out):
        hit = np.nonzero((i_last == k) & (t_last == first_t[k]))[0]
        if hit.size:
            keep_last[hit[0]] = True
    cutoff = first_t[np.isfinite(first_t)].max() if np.isfinite(first_t).any() else -np.inf
    sel = []
    for l, (t, i) in enumerate(spikes):
        if l == nL - 1:
            m = keep_last
        elif prune:
            m = t < cutoff
        else:
            m = np.ones(t.shape[0], dtype=bool)
        sel.append((t[m], i[m]))
    counts = [s[0].shape[0] for s in sel]
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    K = int(start[-1])
    off = param_offsets(weights)
    L = np.zeros((K, K))
    P = np.zeros((K, off[-1]))
    diag = np.zeros(K)
    for l in range(nL):
        tq, iq = sel[l]
        if tq.size == 0:
            continue
        W = weights[l]
        n_in = W.shape[1]
        rows = np.arange(start[l], start[l + 1])
        if l == 0:
            fin = np.isfinite(t_in)
            tp, jp = t_in[fin], np.nonzero(fin)[0]
        else:
            tp, jp = sel[l - 1]
        D = tq[:, None] - tp[None, :]
        M = D > 0
        Dc = np.where(M, D, 0.0)
        H = np.where(M, h(alpha, beta, Dc), 0.0)
        Hp = np.where(M, h_prime(alpha, beta, Dc), 0.0)
        WHp = W[iq][:, jp] * Hp
        diag[rows] += WHp.sum(axis=1)
        if l > 0:
            L[np.ix_(rows, np.arange(start[l - 1], start[l]))] = -WHp
        onehot = np.zeros((jp.shape[0], n_in))
        onehot[np.arange(jp.shape[0]), jp] = 1.0
        Y = H @ onehot                                          # [nq, n_in]: y_ji(f) per presynaptic j
        cols = off[l] + iq[:, None] * n_in + np.arange(n_in)[None, :]
        P[rows[:, None], cols] = Y
        E = reset_block(theta, beta, tq, iq)
        diag[rows] += E.sum(axis=1)
        L[np.ix_(rows, rows)] = -E
    grazing = int((diag < GRAZE_EPS).sum())
    L[np.arange(K), np.arange(K)] = np.maximum(diag, GRAZE_EPS)
    times = np.concatenate([s[0] for s in sel]) if K else np.zeros(0)
    layer = np.concatenate([np.full(c, l) for l, c in enumerate(counts)]).astype(np.int64) if K else np.zeros(0, np.int64)
    neuron = np.concatenate([s[1] for s in sel]).astype(np.int64) if K else np.zeros(0, np.int64)
    out_first = np.full(n_out, -1, dtype=np.int64)
    last_rows = np.arange(start[-2], start[-1])
    out_first[neuron[last_rows]] = last_rows
    if order == "time" and K:
        perm = np.lexsort((layer, times))
        inv = np.empty_like(perm)
        inv[perm] = np.arange(K)
        L, P = L[np.ix_(perm, perm)], P[perm]
        times, layer, neuron = times[perm], layer[perm], neuron[perm]
        out_first = np.where(out_first >= 0, inv[np.maximum(out_first, 0)], -1)
    elif order != "layer":
        raise ValueError(f"order must be 'layer' or 'time', got {order!r}")
    return SpikeSystem(times, layer, neuron, L, P, out_first, grazing)


def spike_jacobian_forward(sys: SpikeSystem) -> np.ndarray:
    """dF/dW [K, n_params] by forward substitution in causal order (Alg. 2)."""
    K = sys.L.shape[0]
    dF = np.zeros_like(sys.P)
    for k in range(K):
        acc = sys.P[k] + sys.L[k, :k] @ dF[:k]
        dF[k] = -acc / sys.L[k, k]
    return dF


def output_cotangent(sys: SpikeSystem, dloss_dfirst: np.ndarray) -> np.ndarray:
    """c = dLoss/dF [K]: the loss gradient w.r.t. each output first spike placed at its row."""
    c = np.zeros(sys.L.shape[0])
    fired = sys.out_first >= 0
    c[sys.out_first[fired]] = np.asarray(dloss_dfirst, dtype=np.float64)[fired]
    return c


def grad_forward(sys: SpikeSystem, dloss_dfirst: np.ndarray) -> np.ndarray:
    """dLoss/dW (flat) by forward mode: c . dF/dW."""
    if sys.L.shape[0] == 0:
        return np.zeros(sys.P.shape[1])
    return output_cotangent(sys, dloss_dfirst) @ spike_jacobian_forward(sys)


def grad_adjoint(sys: SpikeSystem, dloss_dfirst: np.ndarray) -> np.ndarray:
    """dLoss/dW (flat) by the adjoint: L^T lam = c back-substituted in reverse order, then -lam . P."""
    K = sys.L.shape[0]
    if K == 0:
        return np.zeros(sys.P.shape[1])
    c = output_cotangent(sys, dloss_dfirst)
    lam = np.zeros(K)
    for k in range(K - 1, -1, -1):
        lam[k] = (c[k] - sys.L[k + 1:, k] @ lam[k + 1:]) / sys.L[k, k]
    return -(lam @ sys.P)


def unflatten(flat: np.ndarray, weights: list) -> list:
    off = param_offsets(weights)
    return [flat[off[l]:off[l + 1]].reshape(w.shape) for l, w in enumerate(weights)]
