"""PNG pictures for people: a spike raster of one sample, per-layer firing rates of each form."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    from saf.core.files import atomic_write
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def plot_raster(r, graph, sample: int, path: Path, xq=None) -> None:
    """One sample's spikes per layer and time step; with xq, the input events on top (the non-zero
    entries of each step's frame x[t]: an event train, or a constant image repeated every step)."""
    plt = _plt()
    sp = list(r.spikes)
    rows = [("input", "input\nindex", graph.input_frames(np.asarray(xq)[sample:sample + 1])[0] != 0)] \
        if xq is not None else []
    rows += [(l.name, f"{l.name}\nneuron", s[sample]) for l, s in zip(graph.spiking_layers, sp)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 2.2 * len(rows)), squeeze=False)
    for ax, (name, label, s) in zip(axes[:, 0], rows):
        t, k = np.nonzero(s)
        ax.scatter(t + 1, k, s=4, marker="|", color="tab:blue" if name == "input" else "k")
        ax.set_ylabel(label)
        ax.set_xlim(0.5, graph.T + 0.5)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(f"{r.backend}: spike raster of sample {sample} (prediction {int(r.predictions[sample])})")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_rates(rates: dict, layer_names: list, path: Path) -> None:
    """Grouped bars: per-layer firing rate of every backend, side by side."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(rates)
    w = 0.8 / max(1, len(names))
    x = np.arange(len(layer_names))
    for i, n in enumerate(names):
        ax.bar(x + i * w, rates[n], width=w, label=n)
    ax.set_xticks(x + w * (len(names) - 1) / 2, layer_names)
    ax.set_ylabel("spikes / neuron / step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
