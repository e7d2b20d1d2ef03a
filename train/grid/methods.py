"""One minibatch of a time-stepped method on the grid forward (train/grid/forward.py), mirroring
train/methods/registry.py train_batch: SAF-E and OTTT_O update every step, OTTT_A accumulates over the
steps, BPTT keeps the graph through time, SAF-F runs T - 1 steps without a graph and takes its one loss on
the leaking readout R[T] / c[T] at step T. On the grid every method runs the LIF form of the integer
network (the SAF accumulation form has no truncating decay); SAF-E's and SAF-F's weight gradients go
through the presynaptic trace, which is what their SAF gradients equal (Theorem 1, docs/design.md#saf-e-and-ottt_o)."""
from __future__ import annotations

import torch

from saf.train.functional.neuron import bias_coeff
from saf.train.functional.replace import replace
from saf.train.grid.forward import bias_view, grid_step, grid_weights, init_state, logits_of, quantize, synapse_value
from saf.train.memory import state_bytes
from saf.train.online import Update, backward_and_update, online_steps

GRID_METHODS = ("saf-e", "saf-f", "ottt-o", "ottt-a", "bptt")


def _per_step(net, xq, T, method, optimizer, loss_of, after_backward, update) -> dict:
    grid = net.grid

    def step(st):
        wq = grid_weights(net, grid)                  # the weights as updated by the previous step
        o, _, st = grid_step(net, grid, xq, st, "trace", wq)
        return o, st

    total, loss_sum, st = online_steps(step, init_state(net), T, method, optimizer, loss_of, after_backward,
                                       update)
    return {"loss": loss_sum, "logits": total, "state_bytes": state_bytes(st)}


def _saf_f(net, xq, T, optimizer, loss_of, after_backward, update) -> dict:
    grid, st = net.grid, init_state(net)
    with torch.no_grad():
        wq = grid_weights(net, grid)
        for _ in range(T - 1):
            _, _, st = grid_step(net, grid, xq, st, "plain", wq)
    wq = grid_weights(net, grid)
    _, R, st = grid_step(net, grid, xq, st, "trace", wq)
    cT = bias_coeff(T, net.lam)
    ro, (W, B), lg = net.readout, wq[-1], grid.layers[-1]
    path = (synapse_value(ro, W, st.ahat[-1], lg.gain) + bias_view(ro, B) * cT) / (lg.scale * cT)
    logits = replace(logits_of(grid, R) / cT, path)
    loss = loss_of(logits)
    backward_and_update(loss, optimizer, after_backward, update, T)
    return {"loss": float(loss.detach()), "logits": logits.detach(), "state_bytes": state_bytes(st)}


def _bptt(net, xq, T, optimizer, loss_of, after_backward, update) -> dict:
    grid, st, total, loss = net.grid, init_state(net), 0.0, 0.0
    wq = grid_weights(net, grid)
    for _ in range(T):
        o, _, st = grid_step(net, grid, xq, st, "bptt", wq)
        loss = loss + loss_of(o) / T
        total = total + o.detach()
    backward_and_update(loss, optimizer, after_backward, update, T)
    return {"loss": float(loss.detach()), "logits": total, "state_bytes": state_bytes(st)}


def grid_train_batch(net, x, y, T: int, method: str, loss_fn, upd: Update) -> dict:
    """train_batch on the net's grid (net.grid): same return value."""
    optimizer, after_backward, step_optimizer = upd.optimizer, upd.after_backward, upd.step_optimizer
    grid = net.grid
    if method not in GRID_METHODS:
        raise ValueError(f"--method {method} has no grid forward (grid methods: {', '.join(GRID_METHODS)})")
    if int(T) != int(grid.T):
        raise ValueError(f"T={T} differs from the grid's T={grid.T}")

    def update():
        if step_optimizer:
            optimizer.step()

    xq = quantize(grid, x)

    def loss_of(logits):
        return loss_fn(logits, y)
    if method in ("saf-e", "ottt-o", "ottt-a"):
        return _per_step(net, xq, T, method, optimizer, loss_of, after_backward, update)
    if method == "saf-f":
        return _saf_f(net, xq, T, optimizer, loss_of, after_backward, update)
    return _bptt(net, xq, T, optimizer, loss_of, after_backward, update)
