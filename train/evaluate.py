"""Evaluate a network in the SAF form or the LIF form (float), batched, without a graph."""
from __future__ import annotations

import torch


def float_form(net) -> str:
    """The float form that evaluates `net`: its SAF form, or the LIF form when a layer has a non-default
    reset or compare (core/neuron_modes.py: no SAF form exists for it). Nets without modes (DSR) say "saf"."""
    return getattr(net, "float_form", "saf")


@torch.no_grad()
def evaluate(net, x: torch.Tensor, y: torch.Tensor, T: int, form: str = "saf", batch_size: int = 256,
             device: str = "cpu") -> dict:
    """Accuracy, predictions and per-layer firing rates (spikes per neuron per step) in `form`."""
    net.eval()
    preds, logits = [], []
    spike_sums = None
    neurons = None
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        total, recs = net.infer(xb, T, form, record=True)
        logits.append(total.cpu())
        preds.append(total.argmax(1).cpu())
        sums = [sum(float(r.spikes[l].sum()) for r in recs) for l in range(net.n_spiking)]
        spike_sums = sums if spike_sums is None else [a + b for a, b in zip(spike_sums, sums)]
        if neurons is None:
            neurons = [recs[0].spikes[l][0].numel() for l in range(net.n_spiking)]
    pred = torch.cat(preds)
    n = len(x)
    rates = [s / (n * T * k) for s, k in zip(spike_sums, neurons)]
    return {"accuracy": float((pred == y).float().mean()), "predictions": pred,
            "logits": torch.cat(logits), "firing_rates": rates}
