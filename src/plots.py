"""Figure 1 of a run: data in, matplotlib Figure out (Agg backend, no files written here)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TRAIN_STYLE = dict(color="tab:blue", marker="o", markersize=3)
VAL_STYLE = dict(color="tab:orange", marker="s", markersize=3)


def figure_one(
    metrics: dict,
    title: str,
    best_epoch: int | None = None,
    diverged_at: int | None = None,
    stopped_at: tuple | None = None,
) -> Figure:
    """The assignment's Figure 1: loss per epoch and accuracy per epoch, train against validation.

    `metrics` maps train_loss, val_loss, train_acc, val_acc to per-epoch lists (epoch 1 first).
    """
    epochs = np.arange(1, len(metrics["train_loss"]) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = ((loss_ax, "loss", "Cost (cross-entropy + decay)"), (acc_ax, "acc", "Accuracy"))
    for ax, key, ylabel in panels:
        ax.plot(epochs, metrics[f"train_{key}"], label="train (in-sample)", **TRAIN_STYLE)
        ax.plot(epochs, metrics[f"val_{key}"], label="validation", **VAL_STYLE)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"kept (epoch {best_epoch})")
        if diverged_at:
            ax.axvline(diverged_at, color="red", linestyle="--", linewidth=1, label=f"diverged (epoch {diverged_at})")
        if stopped_at:  # (epoch, why): a sweep's pruner or the run's own patience
            ax.axvline(
                stopped_at[0],
                color="black",
                linestyle="-.",
                linewidth=1,
                label=f"{stopped_at[1]} (epoch {stopped_at[0]})",
            )
        ax.legend(loc="best")
    loss_ax.set_title("Loss per epoch")
    acc_ax.set_title("Accuracy per epoch")
    if len(epochs) and max(map(np.nanmax, (metrics["train_loss"], metrics["val_loss"]))) > 10 * np.nanmin(
        metrics["val_loss"]
    ):
        loss_ax.set_yscale("log")  # an early spike would flatten the rest of the curve
    fig.suptitle(title)
    return fig
