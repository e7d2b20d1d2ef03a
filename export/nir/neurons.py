"""NIR's continuous-time neurons as this toolchain's discrete neuron, one step of `dt`.

Forward Euler, the discretization snnTorch's and Norse's NIR importers use:
    LIF  tau v' = (v_leak - v) + r I   ->  v[t] = lam v[t-1] + g I[t],  lam = 1 - dt/tau,  g = dt r / tau
    IF   v' = r I                      ->  v[t] = v[t-1] + r I[t]   (g = r: Norse's IAF adds I every step and
                                                                      its importer ignores dt for IF)
    CubaLIF  tau_syn I' = -I + w_in x  ->  syn[t] = alpha syn[t-1] + g_syn x[t],  alpha = 1 - dt/tau_syn,
                                           g_syn = dt w_in / tau_syn; v as LIF with I = syn (snnTorch's
                                           Synaptic writes w_in = tau_syn/dt, r = tau_mem/dt: g_syn = g = 1)
    LI / I (readouts)                  ->  the same with no threshold; a CubaLI readout's current that
                                           decays (tau_syn > dt) is a second state saf's readout does not hold.
tau = r = inf (snnTorch's beta = 1 writes tau = dt/0 and r = tau/dt) is lam = 1, g = 1. The gain g is
folded into the synapse in front (exact in float when g is a power of two). Every parameter must be
one value for the whole node (per-neuron arrays of one value, as snnTorch must write them, are fine);
v_leak must be 0 and v_reset 0 (NIR's reset; what the reset really is, zero or subtractive, NIR cannot
say: --reset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from saf.export.ir import DECAY_ONE
from saf.export.nir.errors import NirError
from saf.export.nir.graph import kind


@dataclass
class Neuron:
    lam: float                 # leak per step
    gain: float                # input gain g, folded into the synapse in front
    theta: float = 0.0         # v_threshold (0 for a readout)
    note: str = ""             # what was assumed (one clause), "" when nothing
    syn: float = 0.0           # CubaLIF's synaptic current decay per step (0: none, tau_syn = dt)


SNAP = 1e-6                # relative: float32 parameters (tau = dt / (1 - beta)) miss 0.5 by ~1e-8


def snap(x: float) -> float:
    """x, or the power of two 2^k (|k| <= 30) within SNAP of it relative: the value a framework computed
    from float32 parameters (beta = 0.5 written as tau, read back as 0.50000001) is the dyadic one it meant."""
    if x > 0:
        k = round(math.log2(x))
        if abs(k) <= 30 and abs(x - 2.0 ** k) <= SNAP * 2.0 ** k:
            return 2.0 ** k
    return x


F32_EPS = float(np.finfo(np.float32).eps)
ROUNDINGS = 4              # float32 roundings a framework's 1 - dt/tau may carry: dt, tau = dt / (1 - a), and margin


def snap_decay(x: float) -> float:
    """A decay x = 1 - dt/tau (a leak or a current decay), or the 12-bit value k/4096 (Loihi's decay grid)
    whose distance to x float32 rounding explains: a framework writes tau = dt / (1 - a) in float32, so
    dt/tau carries a relative error of at most ROUNDINGS * eps32 / 2 (each rounding eps32/2), that is
    |x - a| <= ROUNDINGS * eps32 / 2 * (1 - a) (alpha 0.75 written as tau reads back as 0.7499999937). A
    value farther from the grid (0.9 is 9.8e-5 from 3686/4096; the bound there is 2.4e-8) is kept."""
    k = round(x * DECAY_ONE)
    a = k / DECAY_ONE
    if 0 <= k < DECAY_ONE and abs(x - a) <= ROUNDINGS * F32_EPS / 2 * (1.0 - a):
        return a
    return x


def _one(path, name: str, node, attr: str, default=None) -> float:
    v = getattr(node, attr, None)
    if v is None:
        if default is None:
            raise NirError(f"{path}: node '{name}' ({kind(node)}) has no {attr}")
        return default
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size == 0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} is empty")
    if np.isnan(a).any() or not (a == a[0]).all():
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} differs between neurons "
                       f"({a.min():g} .. {a.max():g}); saf needs one value per layer")
    return float(a[0])


def _leak(path, name: str, node, tau_attr: str, dt: float) -> tuple:
    tau, r = _one(path, name, node, tau_attr), _one(path, name, node, "r", 1.0)
    if math.isinf(tau):
        if math.isinf(r) or r == 1.0:
            return 1.0, 1.0, "tau = inf read as lam = 1, g = 1 (snnTorch's beta = 1)"
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {tau_attr} = inf with r = {r:g} has no discrete form")
    if tau <= 0 or math.isinf(r) or r <= 0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): needs {tau_attr} > 0 and 0 < r < inf, "
                       f"got {tau_attr} = {tau:g}, r = {r:g}")
    lam = snap_decay(snap(1.0 - dt / tau))
    if not 0.0 < lam <= 1.0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {tau_attr} = {tau:g} at --dt {dt:g} gives a leak "
                       f"1 - dt/tau = {lam:g} outside (0, 1]; give the --dt the network was trained with")
    return lam, snap(dt * r / tau), ""


def _zero(path, name: str, node, attr: str) -> None:
    v = getattr(node, attr, None)
    if v is not None and np.any(np.asarray(v, dtype=np.float64) != 0):
        raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} must be 0 (saf's neuron rests and resets "
                       f"at 0), got {np.asarray(v).ravel()[0]:g}")


def _synaptic_current(path, name: str, node, dt: float) -> float:
    """The gain of a CubaLI readout's synaptic current that does not outlive its step (tau_syn = dt: alpha 0,
    I[t] = g_syn x[t], no current state): the readout is then LI (or I) with gain g g_syn."""
    alpha, g_syn = _decaying_current(path, name, node, dt)
    if alpha != 0.0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): its synaptic current decays by {alpha:g} per step "
                       f"(tau_syn = {_one(path, name, node, 'tau_syn'):g}); saf imports a CubaLI readout only with "
                       f"tau_syn = dt (a current that lasts one step)")
    return g_syn


def _decaying_current(path, name: str, node, dt: float) -> tuple:
    """(alpha, g_syn) of a CubaLIF's synaptic current: syn[t] = alpha syn[t-1] + g_syn x[t] (Euler), alpha =
    1 - dt/tau_syn in [0, 1) (0: tau_syn = dt, a current that lasts one step), g_syn = dt w_in / tau_syn."""
    tau = _one(path, name, node, "tau_syn")
    if not 0 < tau < math.inf:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): tau_syn must be positive and finite, got {tau:g}")
    alpha = snap_decay(snap(1.0 - dt / tau))
    if abs(alpha) <= SNAP:
        alpha = 0.0
    if not 0.0 <= alpha < 1.0:
        raise NirError(f"{path}: node '{name}' ({kind(node)}): tau_syn = {tau:g} at --dt {dt:g} gives a current decay "
                       f"1 - dt/tau_syn = {alpha:g} outside [0, 1); give the --dt the network was trained with")
    return alpha, _one(path, name, node, "w_in", 1.0) * dt / tau


def spiking(path, name: str, node, dt: float) -> Neuron:
    """An IF, LIF or CubaLIF node as (lam, gain, theta)."""
    k = kind(node)
    _zero(path, name, node, "v_reset")
    theta = _one(path, name, node, "v_threshold")
    if not theta > 0:
        raise NirError(f"{path}: node '{name}' ({k}): v_threshold must be positive, got {theta:g}")
    if k == "IF":
        r = _one(path, name, node, "r", 1.0)
        if not 0 < r < math.inf:
            raise NirError(f"{path}: node '{name}' (IF): r must be positive and finite, got {r:g}")
        return Neuron(1.0, r, theta, "IF read as v[t] = v[t-1] + r I[t] (dt not applied, as Norse does)")
    _zero(path, name, node, "v_leak")
    if k == "LIF":
        lam, g, note = _leak(path, name, node, "tau", dt)
        return Neuron(lam, g, theta, note)
    alpha, g_syn = _decaying_current(path, name, node, dt)
    lam, g, note = _leak(path, name, node, "tau_mem", dt)
    return Neuron(lam, snap(g * g_syn), theta, note, syn=alpha)


def readout(path, name: str, node, dt: float) -> Neuron:
    """An I, LI or CubaLI node after the last synapse: the readout integrator (leak lam, gain g)."""
    k = kind(node)
    if k == "I":
        return Neuron(1.0, _one(path, name, node, "r", 1.0))
    _zero(path, name, node, "v_leak")
    if k == "LI":
        lam, g, _ = _leak(path, name, node, "tau", dt)
        return Neuron(lam, g)
    g_syn = _synaptic_current(path, name, node, dt)
    lam, g, _ = _leak(path, name, node, "tau_mem", dt)
    return Neuron(lam, snap(g * g_syn))
