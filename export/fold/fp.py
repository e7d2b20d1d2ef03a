"""Discretize a continuous-time FP network (train/methods/fp/net.py, docs/methods.md#fp-deployment) onto two-state integer
layers (export/ir.py: Layer.du, first-spike readout) at a step dt = t_max / 2^k. Approximate, by
construction: FP trains in continuous time; `saf verify` measures the deployment's error per k.

The continuous neuron (per synapse): I jumps by W at an input spike and decays with rate alpha;
V integrates I and decays with rate beta; spike when V reaches theta, then V -= theta. With one step
dt and a scale S (integer units per unit of V):

    du = 4095 - round(4096 e^{-alpha dt})       U[t] = trunc0(U (4095 - du)/4096) + (W_q s << 6)
    D  = round(4096 (1 - e^{-beta dt}))         V[t] = trunc0(V (4096 - D)/4096) + U[t]
    W_q = round(W g S) on the target's weight grid (Loihi: even values |W_q| <= 254)
    TH = round(theta S)  (fire V >= TH << 6, V -= TH << 6: the subtractive reset, docs/design.md#lavas-lif-registers)

with g = h(dt) = (e^{-alpha dt} - e^{-beta dt}) / (beta - alpha) (= dt e^{-alpha dt} when alpha = beta),
h the synaptic kernel (docs/methods.md#fp-neuron): over one step the continuous system maps exactly to
I' = a I, V' = b V + h(dt) I with a = e^{-alpha dt}, b = e^{-beta dt}. Loihi adds U[t] to V in the same
step U[t] receives its input, so U[t] stands for the current at the step's START, (t-1) dt, carried
through the step: U[t] = S h(dt) I((t-1) dt) and V[t] = b V[t-1] + U[t] is the map, with the next
step's U[t+1] = a U[t] (no input) = S h(dt) I(t dt). An input of weight W at (t-1) dt therefore adds
W_q = W h(dt) S to U[t] (an earlier version used h(dt) / a, which overshoots every weight by
e^{alpha dt}: 6 % at dt = 1/16, enough to push a potential peaking 4 % below theta over it). So without
spikes, inputs on the grid and exact decays, V at step t is S V(t dt) (<< 6) exactly; what remains is the 12-bit
decays, the weight grid, the input times rounded to the grid and the crossing detected at a step's
end. S is the largest scale with (a) the largest |W| dt S on the weight grid's maximum, (b) TH
within the 17-bit threshold mantissa, (c) every layer's carried current bound (state_bound.py,
geometric in (4095 - du)/4096 over T steps) below 2^23, so Loihi's 24-bit u register cannot wrap
(the certificate's current_reg row).

Time: step t = 1..T covers ((t-1) dt, t dt]; T = ceil(t_sim / dt). An input spike at time g is in
frame round(g / dt) (0-based, i.e. 1-based step round(g / dt) + 1); inputs at or after T dt (and
np.inf, no spike) are dropped. An output first spike at 1-based step m (R = T + 1 - m) stands for
the continuous time (m - 1/2) dt, the middle of its step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from saf.export.ir import DECAY_ONE, DU_NONE, STATE_MAX, Graph, Layer
from saf.export.weight_grid import weight_grid
from saf.export.proof.state_bound import current_state_bound, layer_current_bound
from saf.core.errors import SafError

# dt = t_max / 2^8: on the default fp-iris run (seed 0, 93.3 % continuous) k = 8 is the smallest k from
# which every integer prediction equals the continuous model's (README's FP table); verify's table shows
# what each k costs and suggests the smallest such k for a user's own network
DT_EXP_DEFAULT = 8
DT_EXP_RANGE = (1, 12)
FRAC_BITS = 6                    # Lava's fixed activation / threshold shift
THRESHOLD_MAX = (1 << 17) - 1    # Loihi's threshold mantissa


class FoldFPError(SafError, ValueError):
    """The FP network cannot be discretized as asked (one line)."""


@dataclass(frozen=True)
class FPDiscretization:
    k: int
    dt: float
    T: int                       # steps: ceil(t_sim / dt)
    du: int
    D: int
    scale: float                 # S: integer units per unit of V
    threshold: int               # round(theta S)
    weight_max: int              # the weight grid's maximum and step used
    weight_step: int
    gain: float = 0.0            # g: W_q = round(W g S)

    def to_dict(self) -> dict:
        return asdict(self)


def current_decay_for(alpha: float, dt: float) -> int:
    """du with (4095 - du) / 4096 the nearest to e^{-alpha dt}, in [0, 4095]."""
    return int(min(DU_NONE, max(0, DU_NONE - round(DECAY_ONE * math.exp(-alpha * dt)))))


def voltage_decay_for(beta: float, dt: float) -> int:
    """D with (4096 - D) / 4096 the nearest to e^{-beta dt}, in [0, 4095]."""
    return int(min(DU_NONE, max(0, round(DECAY_ONE * (1.0 - math.exp(-beta * dt))))))


def step_gain(alpha: float, beta: float, dt: float) -> float:
    """g = h(dt) = (e^{-alpha dt} - e^{-beta dt}) / (beta - alpha) (dt e^{-alpha dt} when alpha = beta):
    what an input spike at the start of a step adds to V by the step's end, the exact one-step map."""
    d = beta - alpha
    return math.exp(-alpha * dt) * (dt if d == 0 else -math.expm1(-d * dt) / d)


def _quantized(weights: list, gain: float, S: float, wmax: int, step: int) -> list:
    return [np.clip(np.rint(w * gain * S / step) * step, -wmax, wmax).astype(np.int64) for w in weights]


def discretize(net, k: int, target) -> tuple:
    """(FPDiscretization, integer weights per layer) for FPNet `net` at dt = t_max / 2^k."""
    lo, hi = DT_EXP_RANGE
    if not lo <= int(k) <= hi:
        raise FoldFPError(f"--dt-exp must be in {lo}..{hi} (dt = t_max / 2^k), got {k}")
    p = net.params
    dt = p.t_max / float(1 << int(k))
    T = int(math.ceil(p.t_sim / dt - 1e-9))
    du, D = current_decay_for(p.alpha, dt), voltage_decay_for(p.beta, dt)
    wmax, step = weight_grid(target)
    wbig = max(float(np.abs(w).max(initial=0.0)) for w in net.weights)
    if wbig <= 0:
        raise FoldFPError("every FP weight is zero: nothing to deploy")
    gain = step_gain(p.alpha, p.beta, dt)
    S = min(wmax / (wbig * gain), THRESHOLD_MAX / p.theta)
    for _ in range(200):                     # shrink S until no carried current can wrap 24 bits
        Wq = _quantized(net.weights, gain, S, wmax, step)
        worst = max(current_state_bound(layer_current_bound(w, np.zeros(1, np.int64)), FRAC_BITS, du, T)
                    for w in Wq)
        if worst <= STATE_MAX:
            break
        S *= min(0.99, STATE_MAX / worst)
    else:
        raise FoldFPError(f"no weight scale keeps the carried current below 2^23 at dt = {dt:g}")
    th = int(round(p.theta * S))
    if th < 1:
        raise FoldFPError(f"threshold rounds to {th} at dt = {dt:g} (scale {S:g}): choose a smaller --dt-exp")
    return FPDiscretization(int(k), dt, T, du, D, float(S), th, wmax, step, gain), Wq


def fold_fp(net, k: int, target, meta: dict = None) -> Graph:
    """The integer Graph (two-state layers, identity first-spike readout) of FPNet `net` at k."""
    d, Wq = discretize(net, k, target)
    layers, n_in = [], net.code.n_inputs
    for l, w in enumerate(Wq):
        name = f"fp{l}" if l < len(Wq) - 1 else "out"
        layers.append(Layer(name, "dense", w, np.zeros(w.shape[0], np.int64), (n_in,), (w.shape[0],),
                            threshold=d.threshold, scale=d.scale * d.gain, frac_bits=FRAC_BITS, du=d.du))
        n_in = w.shape[0]
    layers.append(Layer("readout", "readout", np.eye(n_in, dtype=np.int64), np.zeros(n_in, np.int64),
                        (n_in,), (n_in,), frac_bits=0, first_spike=True))
    p = net.params
    info = dict(d.to_dict(), alpha=p.alpha, beta=p.beta, theta=p.theta, t_max=p.t_max, t_sim=p.t_sim,
                code=asdict(net.code), input_frame="round(t / dt) (0-based; 1-based step round(t / dt) + 1)",
                first_spike_time="(T + 1/2 - R) dt for R > 0")
    return Graph(layers=layers, T=d.T, lam=math.exp(-p.beta * d.dt), decay=d.D, input_shape=(net.code.n_inputs,),
                 input_scale=1.0, input_bits=1, input_signed=False, target=target.name, input_time_varying=True,
                 meta=dict(meta or {}, fp=info))


def spike_frames(t_in: np.ndarray, dt: float, T: int) -> np.ndarray:
    """Input spike times [N, n_in] (np.inf: none) -> binary frames int64 [N, T, n_in], the spike at
    time g in frame round(g / dt); spikes at frame >= T are dropped."""
    t_in = np.asarray(t_in, dtype=np.float64)
    n, m = t_in.shape
    out = np.zeros((n, int(T), m), dtype=np.int64)
    ok = np.isfinite(t_in)
    idx = np.where(ok, np.rint(np.where(ok, t_in, 0.0) / dt), -1).astype(np.int64)
    s, j = np.nonzero(ok & (idx >= 0) & (idx < T))
    out[s, idx[s, j], j] = 1
    return out


def first_spike_times(readout: np.ndarray, dt: float, T: int) -> np.ndarray:
    """First-spike readout R [N, n] -> continuous times (T + 1/2 - R) dt, np.inf where R = 0."""
    R = np.asarray(readout, dtype=np.float64)
    return np.where(R > 0, (int(T) + 0.5 - R) * dt, np.inf)


def fp_frames_for(graph: Graph, x: np.ndarray) -> tuple:
    """(frames [N, T, n_in], spike times [N, n_in]) of dataset features x for an FP bundle's graph,
    with the latency code and dt stored in graph.meta['fp'] (no checkpoint needed)."""
    from saf.train.methods.fp.net import LatencyCode

    fp = graph.meta["fp"]
    c = fp["code"]
    code = LatencyCode(tuple(c["lo"]), tuple(c["hi"]), c["t_early"], c["t_late"], tuple(c.get("bias_times", ())))
    t_in = code.encode(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    return spike_frames(t_in, float(fp["dt"]), int(graph.T)), t_in
