"""An FP network (docs/methods.md#fp): continuous-time two-state (CUBA) neurons, time-to-first-spike
inputs, first-spike readout; numpy float64 only, no torch needed to run it.

This is the API the deployment side uses (/work/prompts/fp_contract.md): FPParams, LatencyCode, FPNet
(layer_spikes / first_spikes / predict) and the checkpoint (a saf checkpoint, safetensors, nothing
unpickled: tensors "fp.w.0", "fp.w.1", ...; FPParams and LatencyCode as JSON metadata).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from saf.train.methods.fp.sim import simulate, simulate_batch


@dataclass(frozen=True)
class FPParams:
    alpha: float          # 1/tau_s (synaptic current rate)
    beta: float           # 1/tau_n (membrane rate)
    theta: float          # threshold (1.0 in the paper)
    t_max: float          # the input horizon T of the paper (continuous time, NOT steps)
    t_sim: float          # spikes are searched on [0, t_sim); a neuron silent there is silent (t_sim >= t_max)

    def check(self) -> "FPParams":
        for k, v in asdict(self).items():
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ValueError(f"FP parameter {k} must be a positive finite number, got {v!r}")
        if self.t_sim < self.t_max:
            raise ValueError(f"FP t_sim ({self.t_sim}) must be >= t_max ({self.t_max})")
        return self


@dataclass(frozen=True)
class LatencyCode:
    """Time-to-first-spike input coding, one spike per feature (+ bias spikes):
    t = t_early + (t_late - t_early) * (1 - (clip(x, lo, hi) - lo) / (hi - lo)): the largest value spikes
    at t_early, the smallest at t_late (Iris: docs/methods.md#fp-input-code's t = T(1 - (n - min)/(max - min)))."""
    lo: tuple
    hi: tuple
    t_early: float
    t_late: float
    bias_times: tuple = ()        # extra always-on input spikes (Yin-Yang: (0.9,)), appended as last inputs

    def check(self) -> "LatencyCode":
        if len(self.lo) != len(self.hi) or not self.lo:
            raise ValueError(f"latency code: lo and hi need one entry per feature, got {len(self.lo)} and {len(self.hi)}")
        vals = [*self.lo, *self.hi, self.t_early, self.t_late, *self.bias_times]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise ValueError("latency code: every value must be a finite number")
        if not self.t_late > self.t_early >= 0 or any(t < 0 for t in self.bias_times):
            raise ValueError(f"latency code: need 0 <= t_early < t_late and bias times >= 0, got "
                             f"t_early {self.t_early}, t_late {self.t_late}, bias {self.bias_times}")
        return self

    @property
    def n_inputs(self) -> int:
        return len(self.lo) + len(self.bias_times)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x [N, n_features] (as load_dataset returns it) -> spike times float64 [N, n_features +
        len(bias_times)]. Constant features (hi == lo) spike at t_early."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        if x.shape[1] != lo.shape[0]:
            raise ValueError(f"latency code takes {lo.shape[0]} features, got {x.shape[1]}")
        span = np.where(hi > lo, hi - lo, 1.0)
        u = np.where(hi > lo, (np.clip(x, lo, hi) - lo) / span, 1.0)
        t = self.t_early + (self.t_late - self.t_early) * (1.0 - u)
        bias = np.broadcast_to(np.asarray(self.bias_times, dtype=np.float64), (x.shape[0], len(self.bias_times)))
        return np.concatenate([t, bias], axis=1)

    @staticmethod
    def fit(x: np.ndarray, t_early: float, t_late: float, bias_times=(), lo=None, hi=None) -> "LatencyCode":
        """The code with lo/hi the per-feature min/max of x (unless given)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        lo = tuple(float(v) for v in (x.min(axis=0) if lo is None else lo))
        hi = tuple(float(v) for v in (x.max(axis=0) if hi is None else hi))
        return LatencyCode(lo, hi, float(t_early), float(t_late), tuple(float(b) for b in bias_times)).check()


@dataclass
class FPNet:
    params: FPParams
    weights: list         # float64 arrays, layer l: [n_out_l, n_in_l]; feed-forward, no bias terms
    code: LatencyCode

    def __post_init__(self) -> None:
        self.weights = [np.ascontiguousarray(w, dtype=np.float64) for w in self.weights]
        n = self.code.n_inputs
        for l, w in enumerate(self.weights):
            if w.ndim != 2 or w.shape[1] != n:
                raise ValueError(f"FP layer {l}: weight shape {w.shape} does not take {n} inputs")
            n = w.shape[0]

    @property
    def sizes(self) -> list:
        return [self.code.n_inputs] + [w.shape[0] for w in self.weights]

    def simulate(self, t_in: np.ndarray) -> list:
        """One sample: per weight layer (times, neuron) of all spikes in [0, t_sim), sorted by time."""
        p = self.params
        return simulate(p.alpha, p.beta, p.theta, p.t_sim, self.weights, np.asarray(t_in, dtype=np.float64))

    def layer_spikes(self, t_in: np.ndarray) -> list:
        """one sample's input times [n_in] -> per layer (hidden..., output), per neuron, a sorted float64
        array of ALL its spike times in [0, t_sim) (exact event-driven simulation, Alg. 1)."""
        out = []
        for (t, i), w in zip(self.simulate(t_in), self.weights):
            out.append([t[i == k] for k in range(w.shape[0])])
        return out

    def first_spikes(self, t_in: np.ndarray) -> np.ndarray:
        """[N, n_in] -> output first spike times [N, n_out], np.inf where silent."""
        t_in = np.atleast_2d(np.asarray(t_in, dtype=np.float64))
        p = self.params
        s, t, i = simulate_batch(p.alpha, p.beta, p.theta, p.t_sim, self.weights, t_in, first_only_last=True)[-1]
        out = np.full((t_in.shape[0], self.weights[-1].shape[0]), np.inf)
        np.minimum.at(out, (s, i), t)
        return out

    def predict(self, t_in) -> np.ndarray:
        """argmin of first_spikes, lowest index on ties; all silent -> 0."""
        return first_spike_prediction(self.first_spikes(t_in))


def first_spike_prediction(first: np.ndarray) -> np.ndarray:
    """The earliest output neuron per row, lowest index on ties (np.argmin's rule); all inf -> 0."""
    return np.argmin(np.asarray(first, dtype=np.float64), axis=1).astype(np.int64)
