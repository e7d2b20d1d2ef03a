"""Fold a trained SpikingNet into plain float synapses, exactly (no approximation).

What folds, and why it is exact (all of it is linear algebra on the weights):
- scaled weight standardization, its learnable gain and gamma: `Synapse.effective_weight()` is the
  weight the network computes with, so it is the weight we export;
- AvgPool(k) in front of a conv: conv(avgpool_k(x), W; stride s, pad p) equals
  conv(x, W'; stride s*k, pad p*k) with W'[.., i*k+a, j*k+b] = W[.., i, j] / k^2 (each pooled pixel is
  the mean of a k x k block; padding one pooled pixel is padding k input pixels). Needs H and W
  divisible by k, else avg_pool2d drops the remainder and the fold would not be exact (refused);
- any glue in front of a dense layer or the readout (avgpool, global average pooling, flatten):
  the dense weight becomes W' = W J where J is the glue's (linear) Jacobian, computed with one
  vector-Jacobian product, so W' x_raw == W glue(x_raw) for every x_raw;
- a spectrally normalised feedback weight (IDE, train/modules/spectral.py) is its effective weight
  clamp(g, -1, 1) V / sigma(V) from the stored power-iteration vectors, no further iteration;
- the readout `o[t] = W s[t] + b` summed over T steps is an integrator R[T] (export/ir.py), leaking with
  lam when the model was trained on that sum (train/readout.py; quantize sets its decay).

The result is float64 numpy, one FloatLayer per IR layer, plus FloatFeedback edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saf.train.functional.glue import apply_glue
from saf.train.functional.neuron import lif_potential
from saf.core.neuron_modes import DEFAULT_COMPARE, DEFAULT_RESET
from saf.core.errors import SafError


class FoldError(SafError, ValueError):
    """A network that cannot be folded exactly; the message names the layer."""


@dataclass
class FloatLayer:
    name: str
    kind: str                  # "dense" | "conv" | "readout"
    weight: np.ndarray         # float64, [out, in] or [Co, Ci, kh, kw]
    bias: np.ndarray           # float64, per output neuron (dense) or channel (conv)
    in_shape: tuple            # what the folded synapse reads (the previous layer's raw output)
    out_shape: tuple
    stride: int = 1
    padding: int = 0
    pool: int = 1              # k: an AvgPool(k) (or GAP over k x k) was folded in (sum_pool.py can undo it)
    reset: str = DEFAULT_RESET     # the spec's per-layer modes (core/neuron_modes.py), carried into the IR
    compare: str = DEFAULT_COMPARE
    syn_decay: float = 0.0         # the spec's synaptic current decay "alpha" (0: none), the IR's Layer.du


@dataclass
class FloatFeedback:
    src: int
    dst: int
    kind: str                  # "dense" | "conv"
    weight: np.ndarray
    stride: int = 1
    padding: int = 0


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def fold_avgpool_into_conv(w: np.ndarray, k: int, stride: int, padding: int) -> tuple:
    """(W', stride', padding') with conv(x, W', s', p') == conv(avgpool_k(x), W, s, p)."""
    w2 = np.repeat(np.repeat(w, k, axis=2), k, axis=3) / float(k * k)
    return w2, stride * k, padding * k


def fold_glue_into_dense(w: np.ndarray, pre: list, raw_shape: tuple) -> np.ndarray:
    """W' [out, prod(raw_shape)] with W' x == W glue(x) for x of shape raw_shape (one VJP)."""
    wt = torch.from_numpy(np.ascontiguousarray(w))
    x = torch.zeros((wt.shape[0], *raw_shape), dtype=torch.float64, requires_grad=True)
    y = apply_glue(x, pre)
    if y.dim() != 2 or y.shape[1] != wt.shape[1]:
        raise FoldError(f"glue {pre} maps {list(raw_shape)} to {list(y.shape[1:])}, the dense weight "
                        f"expects {wt.shape[1]} inputs")
    (g,) = torch.autograd.grad(y, x, grad_outputs=wt)
    return g.reshape(wt.shape[0], -1).numpy()


def glue_pool(pre: list, raw_shape: tuple) -> int:
    """k when the glue in front of a dense layer is average pooling over k x k blocks (avgpools, then
    optionally a square GAP, then flatten) on sizes that divide exactly; else 1."""
    if len(raw_shape) != 3:
        return 1
    _, h, w = raw_shape
    k = 1
    for op in pre:
        if op[0] == "avgpool":
            j = int(op[1])
            if h % j or w % j:
                return 1
            h, w, k = h // j, w // j, k * j
        elif op[0] == "gap":
            if h != w:
                return 1
            h, w, k = 1, 1, k * h
        elif op[0] != "flatten":
            return 1
    return k


def _fold_conv(name: str, w: np.ndarray, lp) -> tuple:
    shape, stride, padding = tuple(lp.raw_in_shape), int(lp.stride), int(lp.padding)
    for op in lp.pre:               # composition: pool_k2(pool_k1(x)) == pool_{k1 k2}(x) when divisible
        if op[0] != "avgpool":
            raise FoldError(f"layer {name}: cannot fold {op[0]} in front of a conv")
        k = int(op[1])
        if shape[1] % k or shape[2] % k:
            raise FoldError(f"layer {name}: avgpool {k} on a {shape[1]}x{shape[2]} map drops pixels; "
                            f"folding it would not be exact (use sizes divisible by {k})")
        shape = (shape[0], shape[1] // k, shape[2] // k)
    total_k = int(np.prod([op[1] for op in lp.pre])) if lp.pre else 1
    if total_k > 1:
        w, stride, padding = fold_avgpool_into_conv(w, total_k, stride, padding)
    return w, stride, padding


def fold_network(net) -> tuple:
    """(layers: list[FloatLayer], feedback: list[FloatFeedback]) of a trained SpikingNet."""
    layers = []
    synapses = list(net.blocks) + [net.readout]
    with torch.no_grad():
        weights = [_np(s.effective_weight()) for s in synapses]
    for i, (syn, lp, w) in enumerate(zip(synapses, net.plan.layers, weights)):
        ro = lp.kind == "readout"
        name = "readout" if ro else f"{lp.kind}{i + 1}" if lp.kind == "conv" else f"fc{i + 1}"
        bias = _np(syn.bias) if syn.bias is not None else np.zeros(lp.out, np.float64)
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(bias))):
            raise FoldError(f"layer {name}: weights or bias contain NaN/inf")
        raw = tuple(int(d) for d in lp.raw_in_shape)
        if lp.kind == "conv":
            w, stride, padding = _fold_conv(name, w, lp)
            k = int(np.prod([op[1] for op in lp.pre])) if lp.pre else 1
            layers.append(FloatLayer(name, "conv", w, bias, raw, tuple(lp.out_shape), stride, padding, pool=k,
                                     reset=lp.reset, compare=lp.compare, syn_decay=lp.syn_decay))
        else:
            if lp.pre:
                w = fold_glue_into_dense(w, lp.pre, raw)
            elif w.shape[1] != int(np.prod(raw)):
                raise FoldError(f"layer {name}: weight has {w.shape[1]} inputs, previous layer gives {raw}")
            layers.append(FloatLayer(name, "readout" if ro else "dense", w, bias, raw, tuple(lp.out_shape),
                                     pool=glue_pool(lp.pre, raw), reset=lp.reset, compare=lp.compare,
                                     syn_decay=0.0 if ro else lp.syn_decay))
    feedback = []
    for k, f in enumerate(net.plan.feedback):
        if f.transposed:
            raise FoldError(f"feedback {f.src}->{f.dst}: a transposed-conv edge (ConvTranspose {f.kernel}x{f.kernel} "
                            f"stride {f.stride}, IDE's CIFAR nets) cannot be held by the IR, whose feedback "
                            f"edges are dense or stride-1 conv; refused rather than approximated")
        with torch.no_grad():     # a spectrally normalised edge folds clamp(g) V / sigma from its stored u, v
            w = _np(net.fb[k].effective_weight())
        if not np.all(np.isfinite(w)):
            raise FoldError(f"feedback {f.src}->{f.dst}: weights contain NaN/inf")
        kind = "conv" if f.kind == "conv" else "dense"
        feedback.append(FloatFeedback(f.src, f.dst, kind, w, 1, int(f.padding) if kind == "conv" else 0))
    return layers, feedback


def float_forward(layers: list, feedback: list, x: np.ndarray, T: int, lam: float, theta: float) -> tuple:
    """Reference float64 LIF form of the folded network (a check that folding is exact):
    returns (logit sums [N, C], spikes per spiking layer [N, T, n_out])."""
    import torch.nn.functional as F

    def syn(kind, w, inp, stride, padding, in_shape):
        wt = torch.from_numpy(w)
        if kind == "conv":
            return F.conv2d(inp.reshape(-1, *in_shape), wt, None, stride, padding).flatten(1)
        return inp.reshape(inp.shape[0], -1) @ wt.T

    xt = torch.from_numpy(np.asarray(x, np.float64))
    n = xt.shape[0]
    sp_layers = layers[:-1]
    u, cur_prev = [None] * len(sp_layers), [None] * len(sp_layers)
    s_prev = [torch.zeros(n, int(np.prod(l.out_shape)), dtype=torch.float64) for l in sp_layers]
    spikes = [[] for _ in sp_layers]
    total = 0.0
    for _ in range(T):
        inp, s_now = xt, []
        for i, l in enumerate(sp_layers):
            b = torch.from_numpy(np.repeat(l.bias, int(np.prod(l.out_shape[1:]))) if l.kind == "conv" else l.bias)
            cur = syn(l.kind, l.weight, inp, l.stride, l.padding, l.in_shape) + b
            for f in feedback:
                if f.dst == i:
                    cur = cur + syn(f.kind, f.weight, s_prev[f.src], f.stride, f.padding, sp_layers[f.src].out_shape)
            if l.syn_decay and cur_prev[i] is not None:      # syn = alpha syn[t-1] + (W x + b)
                cur = l.syn_decay * cur_prev[i] + cur
            cur_prev[i] = cur
            v = cur if u[i] is None else lif_potential(cur, u[i], s_prev[i], lam, theta, l.reset)
            s = ((v > theta) if l.compare == ">" else (v >= theta)).to(torch.float64)
            u[i] = v
            spikes[i].append(s.numpy().astype(bool))
            s_now.append(s)
            inp = s
        s_prev = s_now
        ro = layers[-1]
        total = total + syn("dense", ro.weight, inp, 1, 0, ro.in_shape) + torch.from_numpy(ro.bias)
    return total.numpy(), [np.stack(sp, axis=1) for sp in spikes]
