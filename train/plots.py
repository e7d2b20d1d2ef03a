"""PNG plots of training curves (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def _firing_rates(metrics: list) -> tuple:
    """The third panel of a time-stepped run: each layer's firing rate per epoch."""
    rates = list(zip(*[m["firing_rates"] for m in metrics]))
    return "firing rate (spikes/neuron/step)", [(f"layer {i}", list(r)) for i, r in enumerate(rates)]


def plot_curves(metrics: list, path: Path, loss_title: str = "training loss", acc_title: str = "accuracy",
                test_label: str = "test (SAF form)", panel: Optional[tuple] = None) -> None:
    """Loss, train/test accuracy and a third panel per epoch: `panel` = (title, [(label, values)]),
    by default every layer's firing rate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [m["epoch"] for m in metrics]
    title, series = panel if panel is not None else _firing_rates(metrics)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [m["train_loss"] for m in metrics], marker="o")
    ax[0].set_title(loss_title)
    ax[1].plot(ep, [m["train_acc"] for m in metrics], marker="o", label="train")
    ax[1].plot(ep, [m["test_acc"] for m in metrics], marker="o", label=test_label)
    ax[1].set_title(acc_title)
    ax[1].legend()
    for label, values in series:
        ax[2].plot(ep, values, marker=".", label=label)
    ax[2].set_title(title)
    ax[2].legend(fontsize=7)
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
