"""A spiking network built from a spec, stepping in either form.

- `saf_step`: the accumulation (training) form, Eq. (4). Only a[t-1] per layer is carried (detached),
  so a step's graph holds the current step only: memory constant in T.
- `lif_step`: the LIF (deployment) form, Eq. (1). mode="trace" is OTTT (value W s[t], weight gradient
  through the presynaptic trace), mode="bptt" keeps the graph through time, mode="plain" is inference.
Both return the readout o[t] = W_o s_N[t] + b_o for the current step.

Input: x is an image [B, *in_shape] fed as a constant current every step (the accumulation is
x c[t]), or a time-varying train [B, T, *in_shape] (event frames, encoded spikes): step t reads
x[:, t-1] and the input accumulation is a_in[t] = lam a_in[t-1] + x[t] (carried in the state).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from saf.train.functional.neuron import bias_coeff, lif_step, saf_potential, saf_spikes, saf_step_fused, trace_step
from saf.train.functional.replace import replace
from saf.train.functional.surrogate import spike
from saf.train.readout import SUM, Readout
from saf.core.neuron_modes import COMPARE_GT
from saf.train.spec import neuron_params, plan
from saf.train.modules.spectral import SpectralSynapse
from saf.train.modules.synapse import Synapse, Wiring


def _feedback_synapse(f, plan, ws: bool, gamma: float):
    n_src, n_dst = plan.layers[f.src].out, plan.layers[f.dst].out
    if f.norm == "spectral":
        return SpectralSynapse(f.kind, n_src, n_dst, f.kernel, f.padding, f.transposed, f.stride, f.output_padding)
    return Synapse(Wiring(f.kind, n_src, n_dst, f.kernel, 1, f.padding), (), ws=ws, gamma=gamma, bias=False)


@dataclass
class SAFState:
    a: list                                    # a[t-1] per spiking layer (None before step 1)
    t: int = 0
    a_in: Optional[torch.Tensor] = None        # input accumulation a_in[t-1] (time-varying input)


@dataclass
class LIFState:
    u: list
    s: list
    ahat: list                                 # presynaptic traces (mode="trace")
    t: int = 0
    a_in: Optional[torch.Tensor] = None        # input trace a_in[t-1] (time-varying input)
    syn: list = None                           # synaptic current syn[t-1] per layer (None: layer has none)


@dataclass
class Record:
    """Optional per-step capture for tests/eval: spikes s[t] and potentials u[t] per spiking layer."""
    spikes: list = field(default_factory=list)
    potentials: list = field(default_factory=list)


class SpikingNet(nn.Module):
    def __init__(self, spec: dict, surrogate: str = "sigmoid", surrogate_slope: float = 4.0, readout: Readout = SUM):
        super().__init__()
        self.spec = spec
        self.readout_kind = readout             # the readout the loss sees (train/readout.py)
        self.plan = plan(spec)
        self.lam, self.theta = neuron_params(spec)
        self.surrogate, self.surrogate_slope = surrogate, surrogate_slope
        ws = bool(spec.get("weight_standardization", True))
        gamma = float(spec.get("gamma", 2.0))
        blocks = []
        for lp in self.plan.layers:
            n_in = lp.in_shape[0]
            kind = "conv" if lp.kind == "conv" else "linear"
            is_ro = lp.kind == "readout"
            blocks.append(Synapse(Wiring(kind, n_in, lp.out, lp.kernel, lp.stride, lp.padding), lp.pre,
                                  ws=ws and not is_ro, gamma=gamma))
        self.blocks = nn.ModuleList(blocks[:-1])
        self.readout = blocks[-1]
        self.fb = nn.ModuleList(_feedback_synapse(f, self.plan, ws, gamma) for f in self.plan.feedback)
        self.fb_edges = [(f.src, f.dst) for f in self.plan.feedback]
        self.modes = [lp.mode for lp in self.plan.layers[:-1]]   # per spiking layer (core/neuron_modes.py)
        self.syn_decays = [lp.syn_decay for lp in self.plan.layers[:-1]]  # 0: no synaptic current state
        self.grid = None    # a GridSpec (train/grid/record.py): forward = the target's integer network (issue 28)

    @property
    def saf_form_valid(self) -> bool:
        """The SAF (accumulation) form equals the LIF form only with every layer at the default modes and
        no synaptic current state."""
        return all(m.is_default for m in self.modes) and not any(self.syn_decays)

    @property
    def float_form(self) -> str:
        """The form that evaluates this network: "saf" (its training form), or "lif" when a layer has a
        non-default reset or compare (the SAF form does not exist for it)."""
        return "saf" if self.saf_form_valid else "lif"

    @property
    def n_spiking(self) -> int:
        return len(self.blocks)

    def spike_fn(self, x, strict: bool = False):
        return spike(x, self.surrogate, self.surrogate_slope, strict)

    def _layer_spike_fn(self, l: int):
        if self.modes[l].compare == COMPARE_GT:
            return lambda x: self.spike_fn(x, True)
        return self.spike_fn

    def init_saf(self) -> SAFState:
        return SAFState([None] * self.n_spiking)

    def init_lif(self) -> LIFState:
        n = self.n_spiking
        return LIFState([None] * n, [None] * n, [None] * n, syn=[None] * n)

    def effective_weights(self) -> dict:
        """The weights the network computes with (sWS applied), for reuse across steps while the
        parameters do not change (SAF-F's graph-free steps, inference): {"blocks", "fb", "readout"}."""
        return {"blocks": [b.effective_weight() for b in self.blocks],
                "fb": [f.effective_weight() for f in self.fb],
                "readout": self.readout.effective_weight()}

    def varying(self, x: torch.Tensor) -> bool:
        """True for a train [B, T, *in_shape], False for an image [B, *in_shape]."""
        return x.dim() == len(self.plan.layers[0].in_shape) + 2

    def step_input(self, x: torch.Tensor, t: int, c: float, a_in_prev) -> tuple:
        """(s_in[t], a_in[t]) of the first layer at step t (1-based): the image x and x c[t], or frame
        x[:, t-1] of a train [B, T, *in_shape] and lam a_in[t-1] + x[t]."""
        if not self.varying(x):
            return x, x * c
        if t > x.shape[1]:
            raise ValueError(f"input train has {x.shape[1]} steps, step {t} asked")
        xt = x[:, t - 1]
        return xt, (xt if a_in_prev is None else self.lam * a_in_prev + xt)

    def power_iterate(self) -> None:
        """One power iteration of every spectrally normalised feedback weight (once per training
        minibatch, as the IDE authors' code does; no-op without one)."""
        for f in self.fb:
            if isinstance(f, SpectralSynapse):
                f.power_iteration(1)

    def _fb_into(self, dst: int):
        return [(k, src) for k, (src, d) in enumerate(self.fb_edges) if d == dst]

    # ---------------------------------------------------------------- SAF (accumulation) form
    def saf_step(self, x: torch.Tensor, st: SAFState, record: Optional[Record] = None,
                 readout: str = "step", weights: Optional[dict] = None):
        """One step of Eq. (4). Returns (o, new_state). readout="step" gives o[t] = W_o s_N[t] + b_o
        (value) with the weight gradient through a_N[t]; readout="acc" gives sum_k lam^(t-k) o[k] =
        W_o a_N[t] + b_o c[t] (SAF-F's loss input, before dividing by c[t]); readout="none" skips the
        readout (o is None). weights: `effective_weights()` computed once, to skip recomputing sWS
        each step where the parameters do not change in between (identical values)."""
        self._require_saf_form()
        t = st.t + 1
        lam, theta = self.lam, self.theta
        c = bias_coeff(t, lam)
        _, inp = self.step_input(x, t, c, st.a_in)           # accumulation of the input
        a_in = inp.detach() if self.varying(x) else None     # carried only for a train
        new_a = []
        wb = weights["blocks"] if weights is not None else [None] * len(self.blocks)
        wf = weights["fb"] if weights is not None else [None] * len(self.fb)
        for l, blk in enumerate(self.blocks):
            U = blk(inp, wb[l]) + blk.bias_term(c)
            for k, src in self._fb_into(l):
                if st.a[src] is not None:                    # W_b a_src[t-1]
                    U = U + self.fb[k](st.a[src], wf[k])
            a_prev = st.a[l]
            a = saf_step_fused(U, a_prev, lam, theta, self.surrogate, self.surrogate_slope)
            if record is not None:
                with torch.no_grad():
                    record.spikes.append(saf_spikes(a, a_prev, lam).detach())
                    record.potentials.append(saf_potential(U, a_prev, lam, theta).detach())
            new_a.append(a)
            inp = a
        a_N, a_prev_N = new_a[-1], st.a[-1]
        ro = self.readout
        if readout == "none":
            o = None
        elif readout == "acc":
            o = ro(a_N, None if weights is None else weights["readout"]) + ro.bias_term(c)
        else:
            w = ro.effective_weight() if weights is None else weights["readout"]
            with torch.no_grad():
                value = ro(saf_spikes(a_N, a_prev_N, lam), w.detach()) + ro.bias_term(1.0)
            o = replace(value, ro(a_N, w) + ro.bias_term(c))
        return o, SAFState([a.detach() for a in new_a], t, a_in)

    def _require_saf_form(self) -> None:
        if not self.saf_form_valid:
            l, m = next(((i, m) for i, m in enumerate(self.modes) if not m.is_default), (None, None))
            if m is None:
                l = next(i for i, a in enumerate(self.syn_decays) if a)
                raise ValueError(f"spiking layer {l} has a synaptic current (alpha {self.syn_decays[l]:g}): the SAF "
                                 f"form holds no current state; use the LIF form")
            raise ValueError(f"spiking layer {l} has reset {m.reset!r} / compare {m.compare!r}: the SAF form is "
                             f"defined only for reset 'subtract' with compare '>='; use the LIF form")

    # ---------------------------------------------------------------- LIF form
    def _current(self, syn: Synapse, s_in, a_in, c: float, mode: str, bias: bool = True, weight=None):
        """Synaptic current W s + b. mode "trace": value from s, gradient through W a_hat + b c.
        weight: the effective weight computed once (inference, mode "plain" only)."""
        if mode != "trace":
            return syn(s_in, weight) + (syn.bias_term(1.0) if bias else 0.0)
        w = syn.effective_weight()
        with torch.no_grad():
            value = syn(s_in, w.detach()) + (syn.bias_term(1.0) if bias else 0.0)
        return replace(value, syn(a_in, w) + (syn.bias_term(c) if bias else 0.0))

    def lif_step(self, x: torch.Tensor, st: LIFState, mode: str = "plain",
                 record: Optional[Record] = None, weights: Optional[dict] = None):
        """One step of Eq. (1). Returns (o, new_state). weights: `effective_weights()` computed once
        (mode "plain" only: inference, where the parameters do not change between steps)."""
        if weights is not None and mode != "plain":
            raise ValueError("lif_step: precomputed weights are for mode='plain' (inference) only")
        t = st.t + 1
        lam, theta = self.lam, self.theta
        c = bias_coeff(t, lam)
        keep = mode == "bptt"
        s_in, a_in = self.step_input(x, t, c, st.a_in)
        a_in0 = a_in.detach() if self.varying(x) else None
        new_u, new_s, new_a, new_syn = [], [], [], []
        wb = weights["blocks"] if weights is not None else [None] * len(self.blocks)
        wf = weights["fb"] if weights is not None else [None] * len(self.fb)
        if self.syn_decays and any(self.syn_decays) and mode == "trace":
            raise ValueError("lif_step: a layer with a synaptic current ('alpha') has no trace (OTTT) form")
        syn_prev = st.syn if st.syn is not None else [None] * self.n_spiking
        for l, blk in enumerate(self.blocks):
            cur = self._current(blk, s_in, a_in, c, mode, weight=wb[l])
            for k, src in self._fb_into(l):
                if st.s[src] is not None:                    # W_b s_src[t-1]
                    cur = cur + self._current(self.fb[k], st.s[src], st.ahat[src], c, mode, bias=False,
                                              weight=wf[k])
            if self.syn_decays[l]:                           # snnTorch Synaptic: syn = alpha syn + (W x + b)
                sp = syn_prev[l]
                if sp is not None:
                    cur = self.syn_decays[l] * (sp if keep else sp.detach()) + cur
            new_syn.append(cur if self.syn_decays[l] else None)
            u_prev = st.u[l] if keep or st.u[l] is None else st.u[l].detach()
            s_prev = st.s[l] if keep or st.s[l] is None else st.s[l].detach()
            u, s = lif_step(cur, u_prev, s_prev, lam, theta, self._layer_spike_fn(l), self.modes[l].reset)
            if record is not None:
                record.spikes.append(s.detach())
                record.potentials.append(u.detach())
            ahat = trace_step(s, None if st.ahat[l] is None else st.ahat[l].detach(), lam) if mode == "trace" else None
            new_u.append(u)
            new_s.append(s)
            new_a.append(ahat)
            s_in, a_in = s, ahat
        o = self._current(self.readout, s_in, a_in, c, mode, weight=None if weights is None else weights["readout"])
        if not keep:
            new_u = [u.detach() for u in new_u]
            new_s = [s.detach() for s in new_s]
            new_a = [None if a is None else a.detach() for a in new_a]
            new_syn = [None if v is None else v.detach() for v in new_syn]
        return o, LIFState(new_u, new_s, new_a, t, a_in0, new_syn)

    # ---------------------------------------------------------------- whole-sample inference
    @torch.no_grad()
    def infer(self, x: torch.Tensor, T: int, form: str = "saf", record: bool = False):
        """Logits over T steps in the chosen form ("saf" or "lif"): the readout the network was trained
        with, sum_t o[t] or (leaking readout) sum_t lam^(T-t) o[t]; and the per-step records when
        asked (list over t of Record)."""
        if self.grid is not None:                            # trained on the deployment grid
            from saf.train.grid.forward import grid_run, logits_of
            R, recs = grid_run(self, self.grid, x, record)
            return logits_of(self.grid, R), recs
        st = self.init_saf() if form == "saf" else self.init_lif()
        ws = self.effective_weights()                        # once: the parameters do not change here
        leak = self.readout_kind.leak(self.lam)
        total, recs = 0.0, []
        for _ in range(T):
            rec = Record() if record else None
            if form == "saf":
                o, st = self.saf_step(x, st, rec, weights=ws)
            else:
                o, st = self.lif_step(x, st, "plain", rec, weights=ws)
            total = total * leak + o if leak != 1.0 else total + o
            if record:
                recs.append(rec)
        return total, recs
