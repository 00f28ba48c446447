"""Figure 1 of a run: data in, matplotlib Figure out (Agg backend, no files written here).

Figure 1 is drawn with matplotlib's object API (a `Figure` of its own, no pyplot state, nothing to close)
and fixed margins: constrained layout would draw the figure about twice to place the same two panels, and
every run of a sweep draws one. `plt` (pyplot on the Agg backend) is for the report's figures.
"""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402, F401  (the report draws its figures with pyplot from here)
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TRAIN_STYLE = dict(color="tab:blue", marker="o", markersize=3)
VAL_STYLE = dict(color="tab:orange", marker="s", markersize=3)
FIGSIZE = (11, 4.2)  # inches; at dpi 100 the PNG is 1100 x 420
MARGINS = dict(left=0.062, right=0.99, bottom=0.115, top=0.84, wspace=0.2)  # room for ticks, labels, titles
PANELS = (("loss", "Cost (cross-entropy + decay)", "Loss per epoch"), ("acc", "Accuracy", "Accuracy per epoch"))
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")


def _marks(ax: Axes, best_epoch: int | None, diverged_at: int | None, stopped_at: tuple | None) -> None:
    """The epoch kept, the epoch it diverged at, and (epoch, why) it stopped at, as labelled lines."""
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"kept (epoch {best_epoch})")
    if diverged_at:
        ax.axvline(diverged_at, color="red", linestyle="--", linewidth=1, label=f"diverged (epoch {diverged_at})")
    if stopped_at:  # (epoch, why): a sweep's pruner or the run's own patience
        ax.axvline(
            stopped_at[0], color="black", linestyle="-.", linewidth=1, label=f"{stopped_at[1]} (epoch {stopped_at[0]})"
        )


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
    fig = Figure(figsize=FIGSIZE)
    loss_ax, acc_ax = fig.subplots(1, 2)
    fig.subplots_adjust(**MARGINS)
    for ax, (key, ylabel, heading) in zip((loss_ax, acc_ax), PANELS, strict=True):
        ax.plot(epochs, metrics[f"train_{key}"], label="train (in-sample)", **TRAIN_STYLE)
        ax.plot(epochs, metrics[f"val_{key}"], label="validation", **VAL_STYLE)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(heading, y=1.0)  # where matplotlib would put it, without measuring every tick label first
        ax.grid(alpha=0.3)
        _marks(ax, best_epoch, diverged_at, stopped_at)
        ax.legend(loc="best")
    if len(epochs) and max(map(np.nanmax, (metrics["train_loss"], metrics["val_loss"]))) > 10 * np.nanmin(
        metrics["val_loss"]
    ):
        loss_ax.set_yscale("log")  # an early spike would flatten the rest of the curve
    fig.suptitle(title)
    return fig


def warm_up() -> None:
    """Draw a throwaway Figure 1 in memory: a sweep worker loads matplotlib's fonts before its first config."""
    figure_one({key: [1.0] for key in CURVES}, "").savefig(io.BytesIO(), format="png", dpi=100)
