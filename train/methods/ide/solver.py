"""Solvers for IDE's backward linear system (docs/methods.md#ide-backward-solvers):

    beta = (I - J^T)^-1 g      i.e. the root of  r(beta) = J^T beta + g - beta

where `vjp(v) = J^T v` is one vector-Jacobian product through the equilibrium map. Both solvers work
on [B, d] tensors, one independent system per sample (J is block diagonal over the batch), and stop
when the residual norm over the whole batch is <= tol * sqrt(B d) (the authors' eps = 2e-10 sqrt(B d))
or after max_iter iterations. Each returns (beta, info) with info = {"iterations", "residual"}.

- fixed-point: beta <- J^T beta + g; converges linearly when ||J|| < 1.
- broyden: limited-memory "good" Broyden on r, inverse Jacobian estimate starting at -I, no line
  search, at most `memory` (27) rank-1 updates kept, returns the lowest-residual iterate, gives up on
  a residual that grew 1e6-fold (the authors' code's defaults: 30 iterations, memory 27).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

VJP = Callable[[torch.Tensor], torch.Tensor]
SOLVERS = ("broyden", "fixed-point")


@dataclass(frozen=True)
class SolverConfig:
    """The IDE backward solver and its stopping rule (defaults: the authors' code)."""
    name: str = "broyden"
    max_iter: int = 30
    tol: float = 2e-10
    memory: int = 27

    def __post_init__(self):
        if self.name not in SOLVERS:
            raise ValueError(f"unknown IDE solver {self.name!r} (known: {', '.join(SOLVERS)})")
        if self.max_iter < 1:
            raise ValueError(f"IDE solver max_iter must be >= 1, got {self.max_iter}")
        if not self.tol > 0:
            raise ValueError(f"IDE solver tolerance must be positive, got {self.tol}")


def _eps(g: torch.Tensor, tol: float) -> float:
    return tol * math.sqrt(g.numel())


def fixed_point(vjp: VJP, g: torch.Tensor, max_iter: int = 30, tol: float = 2e-10):
    beta, eps = g.clone(), _eps(g, tol)
    res, it = float("inf"), 0
    for it in range(1, max_iter + 1):
        new = vjp(beta) + g
        res = float((new - beta).norm())
        beta = new
        if res <= eps:
            break
    return beta, {"iterations": it, "residual": res}


def broyden(vjp: VJP, g: torch.Tensor, max_iter: int = 30, tol: float = 2e-10, memory: int = 27):
    """Limited-memory Broyden on r(x) = J^T x + g - x. The inverse-Jacobian estimate is
    H = -I + sum_k u_k v_k^T (per sample); the step is dx = -H r."""
    x = torch.zeros_like(g)
    r = g.clone()                                   # r(0) = g
    eps = _eps(g, tol)
    us, vs = [], []                                 # [B, d] each

    def h_mul(y):                                   # H y
        out = -y
        for u, v in zip(us, vs):
            out = out + u * (v * y).sum(1, keepdim=True)
        return out

    def ht_mul(y):                                  # y^T H, as [B, d]
        out = -y
        for u, v in zip(us, vs):
            out = out + v * (u * y).sum(1, keepdim=True)
        return out

    best_x, best_res = x, float(r.norm())
    first, it = best_res, 0
    for it in range(1, max_iter + 1):
        dx = -h_mul(r)
        x_new = x + dx
        r_new = vjp(x_new) + g - x_new
        res = float(r_new.norm())
        if res < best_res:
            best_x, best_res = x_new, res
        if res <= eps or res > 1e6 * max(first, 1e-30):
            break
        dr = r_new - r
        vt = ht_mul(dx)                             # dx^T H
        denom = (vt * dr).sum(1, keepdim=True)
        denom = torch.where(denom.abs() < 1e-30, torch.full_like(denom, 1e-30), denom)
        u = (dx - h_mul(dr)) / denom
        us.append(u)
        vs.append(vt)
        if len(us) > memory:
            us.pop(0)
            vs.pop(0)
        x, r = x_new, r_new
    return best_x, {"iterations": it, "residual": best_res}


def solve(vjp: VJP, g: torch.Tensor, cfg: SolverConfig = SolverConfig()):
    if cfg.name == "fixed-point":
        return fixed_point(vjp, g, cfg.max_iter, cfg.tol)
    return broyden(vjp, g, cfg.max_iter, cfg.tol, cfg.memory)
