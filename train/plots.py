"""PNG plots of training curves (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path


def plot_curves(metrics: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [m["train_loss"] for m in metrics], marker="o")
    ax[0].set_title("training loss")
    ax[1].plot(ep, [m["train_acc"] for m in metrics], marker="o", label="train")
    ax[1].plot(ep, [m["test_acc"] for m in metrics], marker="o", label="test (SAF form)")
    ax[1].set_title("accuracy")
    ax[1].legend()
    rates = list(zip(*[m["firing_rates"] for m in metrics]))
    for i, r in enumerate(rates):
        ax[2].plot(ep, r, marker=".", label=f"layer {i}")
    ax[2].set_title("firing rate (spikes/neuron/step)")
    ax[2].legend(fontsize=7)
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
