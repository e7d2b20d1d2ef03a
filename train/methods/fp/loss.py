"""FP's first-spike loss (docs/methods.md#fp-loss-and-readout, sign corrected as in docs/methods.md#fp-the-loss-sign):

    L = (1/N) sum_i [ -log softmax(-f_i / tau_0)_{y_i} + gamma (e^{f_{i,y_i} / tau_1} - 1) ]

f_i: the first spike time of each output neuron. Convention for a silent output neuron (the paper
gives none): f = t_silent (the simulation horizon t_sim) with zero gradient, counted by the caller's
metrics ("silent_outputs").
"""
from __future__ import annotations

import numpy as np


def first_spike_loss(first: np.ndarray, y: np.ndarray, tau0: float, tau1: float, gamma: float,
                     t_silent: float) -> tuple:
    """first [N, C] (np.inf = silent), y [N] -> (loss, dL/df [N, C] (zero at silent entries), silent count)."""
    first = np.asarray(first, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    N = first.shape[0]
    silent = ~np.isfinite(first)
    f = np.where(silent, t_silent, first)
    z = -f / tau0
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    fy = f[rows, y]
    reg = np.exp(fy / tau1)
    loss = float(np.mean(-np.log(p[rows, y]) + gamma * (reg - 1.0)))
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1.0
    grad = (onehot - p) / tau0                       # d(-log softmax(-f/tau0)_y)/df
    grad[rows, y] += gamma * reg / tau1
    grad = np.where(silent, 0.0, grad) / N
    return loss, grad, int(silent.sum())
