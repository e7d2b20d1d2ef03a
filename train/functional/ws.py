"""Scaled weight standardization (sWS, NF-ResNets; used by OTTT/SAF instead of batch norm).

W_hat = gain * gamma * (W - mean(W)) / sqrt(var(W) * fan_in + eps), statistics per output unit.

With RECOMPUTE on (opt-in, below), `scaled_ws` runs these ops as one autograd node that saves only its
inputs (the parameters, held anyway) and recomputes the ops in backward: autograd then differentiates the very same graph, so the
value and both gradients are bit for bit those of the plain ops (`scaled_ws_ops`), while a step's graph
no longer keeps two weight-sized intermediates per layer ((W - mean) and the standardized W before the
gain) alive until backward: on VGG-11 that was 70 MB of every step's 132 MB saved at batch 8
(`saf bench train --profile`). The price is one more sWS forward per backward, weight-sized and so the
same at every batch size: it costs time in SAF and OTTT alike (sWS forward + backward x1.37 in an
interleaved A/B on VGG-11's weights, under load), and at the allocator peak it lightened OTTT more than SAF
(VGG-11, batch 8: SAF-E 259.8 -> 205.6 MB, OTTT_O 309.6 -> 239.2 MB), so it is off by default: the
SAF/OTTT ratios and OTTT's speed stay as they were unless it is asked for.
"""
from __future__ import annotations

import torch

# True: recompute the intermediates in backward (less memory, more time); False (default): save them as
# plain autograd does. `saf bench train --sws save|recompute` sets it for one benchmark run.
RECOMPUTE = False


def scaled_ws_ops(weight: torch.Tensor, gain: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Standardize `weight` ([out, ...]) per output unit; gain has shape [out] (broadcast). Plain ops."""
    w = weight.reshape(weight.shape[0], -1)
    fan_in = w.shape[1]
    mean = w.mean(dim=1, keepdim=True)
    var = w.var(dim=1, unbiased=False, keepdim=True)
    w_hat = (w - mean) * torch.rsqrt(var * fan_in + eps)
    w_hat = w_hat * (gain.reshape(-1, 1) * gamma)
    return w_hat.reshape(weight.shape)


def _keep(t):
    return t


class _ScaledWS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, gain, gamma, eps):
        ctx.save_for_backward(weight, gain)
        ctx.gamma, ctx.eps = gamma, eps
        return scaled_ws_ops(weight, gain, gamma, eps)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise RuntimeError("scaled_ws: a higher-order gradient (create_graph=True) is not supported; "
                               "use scaled_ws_ops")
        weight, gain = ctx.saved_tensors
        need = ctx.needs_input_grad[:2]
        # the recomputed graph lives only inside this backward: plain saving, past any saved-tensor hooks
        # (a SavedTensorMeter would count, and keep alive, what is freed at the end of this call)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
            w = weight.detach().requires_grad_(need[0])
            g = gain.detach().requires_grad_(need[1])
            out = scaled_ws_ops(w, g, ctx.gamma, ctx.eps)
            ins = [t for t, n in zip((w, g), need) if n]
            got = iter(torch.autograd.grad(out, ins, grad)) if ins else iter(())
        return (next(got) if need[0] else None), (next(got) if need[1] else None), None, None


def scaled_ws(weight: torch.Tensor, gain: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """`scaled_ws_ops`; with RECOMPUTE its intermediates are recomputed in backward instead of saved
    (module docstring). The plain ops where no gradient is wanted."""
    if not RECOMPUTE or not torch.is_grad_enabled() or not (weight.requires_grad or gain.requires_grad):
        return scaled_ws_ops(weight, gain, gamma, eps)
    return _ScaledWS.apply(weight, gain, gamma, eps)
