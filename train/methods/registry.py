"""Training methods, one flag (SAF paper Sec. 4; OTTT paper Sec. 4):

saf-e   SAF forward, loss o[t] per step, gradient and update every step (Theorem 1: = OTTT_O).
saf-f   SAF forward without a graph for t < T, one loss on sum_t lam^(T-t) o[t] / c[T] at t = T.
ottt-o  LIF forward, presynaptic-trace weight gradient, update every step.
ottt-a  as ottt-o, gradients accumulated over the T steps, one update per batch.
bptt    LIF forward with the full graph through time, one update per batch.
dsr     DSR (train/methods/dsr/net.py): graph-free simulation, one backward through the spike representations'
        clamp mapping; per-layer trainable thresholds, alpha firing, spiking output layer.
fp      FP (train/methods/fp/train.py; docs/methods.md#fp): continuous-time two-state neurons, exact spike-time gradients
        (forward mode / adjoint), first-spike loss and readout; its own numpy loop, not train_batch.
ide     SAF forward without a graph for T steps, implicit-differentiation backward at the equilibrium
        of the rates (train/methods/ide/implicit.py; IDE paper, docs/methods.md#ide-gradient), one update per batch.
SAF and OTTT keep only the current step's graph: memory constant in T.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from saf.train.methods.ide.solver import SolverConfig
from saf.train.functional.neuron import bias_coeff
from saf.train.methods.ide.implicit import train_batch_ide
from saf.train.memory import state_bytes
from saf.train.online import Update, backward_and_update, online_steps
from saf.train.readout import LEAKY_SUM, SPIKE_COUNT, SUM, Readout

METHODS = ("saf-e", "saf-f", "ottt-o", "ottt-a", "bptt", "dsr", "ide")
# methods outside the time-stepped loop (no train_batch, their own trainer): `saf train --method fp`
CONTINUOUS_METHODS = ("fp",)
# the readout each method's loss sees (docs/design.md#readouts); SAF-F's leaks with lam, IDE's with lam < 1;
# DSR's default is the spiking output layer (--dsr-readout linear gives LEAKY_SUM, set by the DSRNet itself)
READOUT = {"saf-e": SUM, "saf-f": LEAKY_SUM, "ottt-o": SUM, "ottt-a": SUM, "bptt": SUM, "dsr": SPIKE_COUNT,
           "ide": LEAKY_SUM}
# methods whose readout leaks only for lam < 1 (at lam = 1 they record the non-leaking sum)
READOUT_SUM_AT_IF = ("ide",)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    return method


def readout_for(method: str, lam: Optional[float] = None) -> Readout:
    """The readout `method` trains (and so the one to evaluate and deploy) at leak `lam`."""
    if method in READOUT_SUM_AT_IF and lam == 1.0:
        return SUM
    return READOUT[check_method(method)]


def train_batch(net, x: torch.Tensor, y: torch.Tensor, T: int, method: str, optimizer,
                loss_fn: LossFn, after_backward: Optional[Callable[[int], None]] = None,
                step_optimizer: bool = True, ide_solver: Optional[SolverConfig] = None) -> dict:
    """Run one minibatch with `method`. Returns {"loss": float, "logits": Tensor [N, classes]}
    (logits: sum_t o[t], or SAF-F's weighted readout). after_backward(t) is called after each
    backward (tests use it to capture per-step gradients); step_optimizer=False skips updates.
    ide_solver: IDE's backward solver (default: Broyden, 30 iterations, the authors' tolerance)."""
    check_method(method)
    if getattr(net, "grid", None) is not None:      # on the deployment grid (train/grid/, issue 28)
        from saf.train.grid.methods import grid_train_batch
        return grid_train_batch(net, x, y, T, method, loss_fn, Update(optimizer, after_backward, step_optimizer))
    if method == "dsr":
        from saf.train.methods.dsr.net import dsr_train_batch
        return dsr_train_batch(net, x, y, T, optimizer, loss_fn, after_backward, step_optimizer)
    if net.training:                         # spectrally normalised feedback: one power iteration
        net.power_iterate()                  # (a DDPNet forwards both names to its SpikingNet)
    if method == "ide":
        return train_batch_ide(net, x, y, T, loss_fn, Update(optimizer, after_backward, step_optimizer), ide_solver)

    def update():
        if step_optimizer:
            optimizer.step()

    total = 0.0
    if method in ("saf-e", "ottt-o", "ottt-a"):
        def step(st):
            return net.saf_step(x, st) if method == "saf-e" else net.lif_step(x, st, "trace")

        st = net.init_saf() if method == "saf-e" else net.init_lif()
        total, loss_sum, st = online_steps(step, st, T, method, optimizer, lambda o: loss_fn(o, y), after_backward,
                                           update)
        return {"loss": loss_sum, "logits": total, "state_bytes": state_bytes(st)}
    if method == "saf-f":
        st = net.init_saf()
        with torch.no_grad():                                # no graph, no readout, sWS computed once
            ws = net.effective_weights() if T > 1 else None
            for _ in range(T - 1):
                _, st = net.saf_step(x, st, readout="none", weights=ws)
            del ws
        o_acc, st = net.saf_step(x, st, readout="acc")
        logits = o_acc / bias_coeff(T, net.lam)
        loss = loss_fn(logits, y)
        backward_and_update(loss, optimizer, after_backward, update, T)
        return {"loss": float(loss.detach()), "logits": logits.detach(), "state_bytes": state_bytes(st)}
    # bptt
    st = net.init_lif()
    loss = 0.0
    for _ in range(T):
        o, st = net.lif_step(x, st, "bptt")
        loss = loss + loss_fn(o, y) / T
        total = total + o.detach()
    backward_and_update(loss, optimizer, after_backward, update, T)
    return {"loss": float(loss.detach()), "logits": total, "state_bytes": state_bytes(st)}
