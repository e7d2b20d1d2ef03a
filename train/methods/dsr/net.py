"""`--method dsr`: Differentiation on Spike Representation (docs/methods.md#dsr), O(1) memory in T.

DSRNet is the spiking network DSR trains: per-layer trainable thresholds V^l (one scalar each, in the
checkpoint as `vth`), alpha firing (fire at alpha V^l, subtract V^l), IF (lam = 1) or LIF (the
project's leak-after-reset form), spikes carrying V^l, and either a spiking output layer of
num_classes neurons read out as (weighted) spike counts ("spike_count", DSR's design; the prediction
is the lowest index among tied counts in every form) or a non-spiking linear readout on the last
representation ("leaky-sum", a documented deviation that deploys as the leaking integrator).

Training (implementation B, docs/methods.md#dsr-gradient): simulate T steps without a graph, keep each layer's
representation a^l = V^l sum_t lam^(T-t) s^l[t] / c[T]; then build one rate-domain graph
o^l = Replace(value a^l, gradient through clamp(W^l o^(l-1) + b^l, 0, V^l)) and backpropagate once.
Memory is constant in T (nothing per step is kept).

The DSR options live in spec["dsr"] = {"alpha", "readout", "vth_min"}; `dsr_spec` appends the
output layer so the checkpoint's spec rebuilds the same network (export/fold/dsr.py deploys it).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn

from saf.train.methods.dsr.functional import clamp_map, neuron_step
from saf.train.functional.neuron import bias_coeff, train_rate
from saf.train.functional.replace import replace
from saf.train.modules.network import Record
from saf.train.modules.synapse import Synapse, Wiring
from saf.train.readout import LEAKY_SUM, SPIKE_COUNT, Readout
from saf.train.spec import SpecError, neuron_params, plan

READOUT_CHOICES = ("spike", "linear")
VTH_MIN = 0.01                    # DSR's lower bound on a threshold (IF; the authors' code)


def dsr_spec(spec: dict, dsr_alpha: float = 1.0, readout: str = "spike") -> dict:
    """The spec DSR trains: spec["dsr"] set, and for a spiking output one more linear spiking layer
    of num_classes neurons (its spike counts are the logits; the readout after it is the identity)."""
    if not (0.0 < float(dsr_alpha) <= 1.0):
        raise SpecError(f"--dsr-alpha must be in (0, 1], got {dsr_alpha}")
    if readout not in READOUT_CHOICES:
        raise SpecError(f"--dsr-readout must be one of {', '.join(READOUT_CHOICES)}, got {readout!r}")
    if spec.get("feedback"):
        raise SpecError("--method dsr trains feed-forward networks (the spec has feedback edges)")
    spec = copy.deepcopy(spec)
    if "dsr" in spec:
        return spec
    if readout == "spike":
        p = plan(spec)
        if len(p.layers[-2].out_shape) != 1:
            spec["layers"].append({"type": "flatten"})
        spec["layers"].append({"type": "linear", "out": int(spec["num_classes"])})
    spec["dsr"] = {"alpha": float(dsr_alpha), "readout": readout, "vth_min": VTH_MIN}
    return spec


class DSRNet(nn.Module):
    def __init__(self, spec: dict, readout: Optional[Readout] = None, shared=None):
        super().__init__()
        if "dsr" not in spec:
            raise SpecError("a DSR network needs spec['dsr'] (build it with dsr_spec)")
        self.spec = spec
        self.plan = plan(spec)
        self.lam, theta = neuron_params(spec)
        d = spec["dsr"]
        self.dsr_alpha, self.vth_min = float(d.get("alpha", 1.0)), float(d.get("vth_min", VTH_MIN))
        self.spiking_output = d.get("readout", "spike") == "spike"
        self.readout_kind = readout or (SPIKE_COUNT if self.spiking_output else LEAKY_SUM)
        self.theta = 1.0                 # every threshold is folded to 1 at export (fold_dsr)
        ws, gamma = bool(spec.get("weight_standardization", True)), float(spec.get("gamma", 2.0))
        if shared is not None:
            blocks = list(shared.blocks) + [shared.readout]
        else:
            blocks = [Synapse(Wiring("conv" if lp.kind == "conv" else "linear", lp.in_shape[0], lp.out, lp.kernel,
                                     lp.stride, lp.padding), lp.pre, ws=ws and lp.kind != "readout", gamma=gamma)
                      for lp in self.plan.layers]
        self.blocks = nn.ModuleList(blocks[:-1])
        self.readout = blocks[-1]
        if self.spiking_output and shared is not None:
            raise SpecError("a DSR view of another network uses the linear readout")
        if self.spiking_output:          # identity, no bias: R = (weighted) spike counts of the output layer
            with torch.no_grad():
                self.readout.weight.copy_(torch.eye(self.readout.weight.shape[0]))
                self.readout.bias.zero_()
            self.readout.weight.requires_grad_(False)
            self.readout.bias.requires_grad_(False)
        self.vth = nn.Parameter(torch.full((len(self.blocks),), float(theta)))
        self.fb, self.fb_edges = nn.ModuleList(), []

    @property
    def n_spiking(self) -> int:
        return len(self.blocks)

    def thresholds(self) -> torch.Tensor:
        """V^l as the network computes with them (the lower bound applied)."""
        return self.vth.clamp(min=self.vth_min)

    def varying(self, x: torch.Tensor) -> bool:
        """True for a spike train / frames [B, T, *in_shape], False for an image [B, *in_shape]."""
        return x.dim() == len(self.spec["input_shape"]) + 2

    def input_rep(self, x: torch.Tensor) -> torch.Tensor:
        """The input's representation: the image itself, or a train's weighted average rate."""
        return train_rate(x, self.lam) if self.varying(x) else x

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, T: int, record: bool = False) -> tuple:
        """T steps of the spiking network without a graph: (representations a^l, per-step Records).
        x is an image [B, *in_shape] (the same input every step) or a train [B, T, *in_shape]."""
        varying = self.varying(x)
        if varying and x.shape[1] != T:
            raise ValueError(f"input train has {x.shape[1]} steps, T = {T}")
        V = self.thresholds().detach()
        ws = [b.effective_weight() for b in self.blocks]
        u = [None] * self.n_spiking
        s = [None] * self.n_spiking
        acc = [None] * self.n_spiking
        recs = []
        for t in range(T):
            rec = Record() if record else None
            inp = x[:, t] if varying else x
            for l, blk in enumerate(self.blocks):
                cur = blk(inp, ws[l]) + blk.bias_term(1.0)
                u[l], s[l] = neuron_step(cur, u[l], s[l], self.lam, V[l], self.dsr_alpha)
                acc[l] = s[l] if acc[l] is None else self.lam * acc[l] + s[l]
                if rec is not None:
                    rec.spikes.append(s[l].clone())
                    rec.potentials.append(u[l].clone())
                inp = V[l] * s[l]
            if record:
                recs.append(rec)
        c = bias_coeff(T, self.lam)
        return [V[l] * acc[l] / c for l in range(self.n_spiking)], recs

    def logits_from(self, reps: list, x: torch.Tensor) -> torch.Tensor:
        """Implementation B's one rate-domain graph: o^l = Replace(a^l, clamp(W^l o^(l-1) + b^l, 0, V^l))."""
        V = self.thresholds()
        o = self.input_rep(x)
        for l, blk in enumerate(self.blocks):
            o = replace(reps[l], clamp_map(blk(o) + blk.bias_term(1.0), V[l]))
        if self.spiking_output:
            return o
        return self.readout(o) + self.readout.bias_term(1.0)

    def infer(self, x: torch.Tensor, T: int, form: str = "saf", record: bool = False):
        """(logits, records): the spike-count representation of the output layer or the linear readout
        on the last representation. One forward form: `form` is accepted for evaluate()'s interface."""
        with torch.no_grad():
            reps, recs = self.simulate(x, T, record)
            return self.logits_from(reps, x), recs


def dsr_view(net) -> DSRNet:
    """A DSRNet computing with a SpikingNet's own synapses (linear readout, thresholds at its theta),
    so one network can be timed and measured under every method (`saf bench train`, tests)."""
    if isinstance(net, DSRNet):
        return net
    twin = net.__dict__.get("_dsr_view")
    if twin is None:
        twin = DSRNet(dsr_spec(net.spec, 1.0, "linear"), shared=net)
        twin.vth.data = twin.vth.data.to(next(net.parameters()).device)
        net.__dict__["_dsr_view"] = twin             # not a submodule: the state_dict is unchanged
    return twin


def dsr_train_batch(net, x, y, T: int, optimizer, loss_fn, after_backward=None,
                    step_optimizer: bool = True) -> dict:
    """One minibatch of DSR (implementation B). A SpikingNet is trained through its dsr_view."""
    net = dsr_view(net)
    with torch.no_grad():
        net.vth.clamp_(min=net.vth_min)           # the authors' bound, applied before each forward
    reps, _ = net.simulate(x, T)
    logits = net.logits_from(reps, x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward:
        after_backward(T)
    if step_optimizer:
        optimizer.step()
    return {"loss": float(loss.detach()), "logits": logits.detach(),
            "state_bytes": sum(r.numel() * r.element_size() for r in reps)}
