"""IDE training (Xiao et al. 2021; docs/methods.md#ide-gradient): gradient by implicit differentiation at the
equilibrium of the firing rates.

Forward: the SAF form without a graph for T steps (it *is* the LIF network that deploys), giving each
spiking layer's weighted rate z_l = a_l[T] / c[T]. The loss sees the readout on the last layer's rate,
W_o z_N + b_o (docs/design.md#readouts: a non-leaking integrator for IF, leaking with lam for LIF).
Backward: the rates approximate the fixed point of the equilibrium map

    F(z)_l = clamp((W_l F(z)_{l-1} + sum_{feedback k -> l} W_k z_k + b_l) / theta, 0, 1),  F(z)_0 := x

(feed-forward within a step, feedback from the previous iterate, as the network's one-step delay);
beta = (I - J_F^T)^-1 dL/dz is solved at z = the SNN's rates (train/methods/ide/solver.py), then
one VJP of F at z with beta gives every parameter's gradient. The clamp's autograd passes gradient on
the closed interval [0, 1], as the authors' code (docs/methods.md#ide-the-gradient-mask). Memory: the forward keeps
one state per layer and no graph; the backward holds one graph of F: constant in T.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from saf.train.methods.ide.solver import SolverConfig, solve
from saf.train.functional.neuron import bias_coeff, train_rate
from saf.train.memory import state_bytes
from saf.train.online import Update


@torch.no_grad()
def snn_rates(net, x: torch.Tensor, T: int):
    """The SNN's weighted rates a_l[T] / c[T] per spiking layer (SAF form, no graph), and its state."""
    st = net.init_saf()
    ws = net.effective_weights()
    for _ in range(T):
        _, st = net.saf_step(x, st, readout="none", weights=ws)
    c = bias_coeff(T, net.lam)
    return [a / c for a in st.a], st


def equilibrium_map(net, x: torch.Tensor, z: list) -> list:
    """F(z) (module docstring), with autograd through the parameters and z."""
    out, inp = [], x
    for l, blk in enumerate(net.blocks):
        pre = blk(inp) + blk.bias_term(1.0)
        for k, src in net._fb_into(l):
            pre = pre + net.fb[k](z[src])
        a = torch.clamp(pre / net.theta, 0.0, 1.0)
        out.append(a)
        inp = a
    return out


def readout_logits(net, z_last: torch.Tensor) -> torch.Tensor:
    """W_o z_N + b_o: the loss input (R[T] / c[T] of the deployed integrator)."""
    return net.readout(z_last) + net.readout.bias_term(1.0)


def _flat(ts: list) -> torch.Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in ts], 1)


def _unflat(v: torch.Tensor, like: list) -> list:
    out, i = [], 0
    for t in like:
        n = t[0].numel()
        out.append(v[:, i:i + n].reshape(t.shape))
        i += n
    return out


def implicit_backward(net, x: torch.Tensor, z: list, g_last: torch.Tensor, solver: SolverConfig) -> dict:
    """Accumulate into .grad of the spiking layers' and feedback parameters the implicit gradient
    (d F / d theta)^T beta with beta = (I - J_F^T)^-1 g at z, where g = dL/dz (nonzero on the last
    layer only). Returns the solver's info."""
    zs = [t.detach().requires_grad_(True) for t in z]
    # modules see non-leaf views of z: torch's module tracker (FlopCounterMode, the bench's probe)
    # refuses a leaf module input under autograd.grad
    ys = equilibrium_map(net, x, [t.view_as(t) for t in zs])
    g = [torch.zeros_like(t) for t in zs]
    g[-1] = g_last.detach()

    def vjp(v: torch.Tensor) -> torch.Tensor:
        gr = torch.autograd.grad(ys, zs, grad_outputs=_unflat(v, ys), retain_graph=True, allow_unused=True)
        return _flat([torch.zeros_like(t) if d is None else d for t, d in zip(zs, gr)])

    fed_back = any(True for _ in net.fb)
    if fed_back:
        beta, info = solve(vjp, _flat(g), solver)
    else:                                   # no feedback: J = 0, beta = g
        beta, info = _flat(g), {"iterations": 0, "residual": 0.0}
    params = [p for m in (net.blocks, net.fb) for p in m.parameters() if p.requires_grad]
    torch.autograd.backward(ys, _unflat(beta, ys), inputs=params)
    return info


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_batch_ide(net, x: torch.Tensor, y: torch.Tensor, T: int, loss_fn: LossFn, upd: Update,
                    solver: Optional[SolverConfig] = None) -> dict:
    """One IDE minibatch (module docstring) on a SpikingNet (not DDP-wrapped: the trainer refuses
    --ddp with IDE). Returns {"loss", "logits", "state_bytes", "solver"}."""
    optimizer, after_backward, step_optimizer = upd.optimizer, upd.after_backward, upd.step_optimizer
    solver = solver or SolverConfig()                 # (train_batch did this batch's power iteration)
    z, st = snn_rates(net, x, T)
    z_last = z[-1].detach().requires_grad_(True)
    logits = readout_logits(net, z_last)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()                         # readout parameters and dL/dz_N
    x_rate = train_rate(x, net.lam) if net.varying(x) else x      # F(z)_0: the input's rate
    info = implicit_backward(net, x_rate, z, z_last.grad, solver)
    if after_backward:
        after_backward(T)
    if step_optimizer:
        optimizer.step()
    return {"loss": float(loss.detach()), "logits": logits.detach(), "state_bytes": state_bytes(st),
            "solver": info}
