"""Figure 1 of a run: data in, matplotlib Figure out (Agg backend, no files written here).

Figure 1 is drawn with matplotlib's object API (no pyplot state, nothing to close) and fixed margins:
constrained layout would draw the figure about twice to place the same two panels, and every run of a sweep
draws one. Each thread builds its Figure 1 once and draws every later run's on it again (new curves, limits,
marks, legend and title): a sweep worker or a pack closes many runs, and building the axes, ticks and lines
anew cost a third of drawing one. The PNG is a new figure's, pixel for pixel (tests/unit/test_plots.py). `plt`
(pyplot on the Agg backend) is for the report's figures.
"""

import io
import threading

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


class _FigureOne:
    """A Figure 1 whose axes, labels and curves are built once and given each run's data in turn."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=FIGSIZE)
        self.axes = self.figure.subplots(1, 2)
        self.figure.subplots_adjust(**MARGINS)
        self.curves: list[tuple] = []  # each panel's (train, validation) lines
        for ax, (_, ylabel, heading) in zip(self.axes, PANELS, strict=True):
            (train,) = ax.plot([], [], label="train (in-sample)", **TRAIN_STYLE)
            (val,) = ax.plot([], [], label="validation", **VAL_STYLE)
            self.curves.append((train, val))
            ax.set_xlabel("Epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(heading, y=1.0)  # where matplotlib would put it, without measuring every tick label first
            ax.grid(alpha=0.3)
        self.title = self.figure.suptitle("")

    def draw(
        self, metrics: dict, title: str, best_epoch: int | None, diverged_at: int | None, stopped_at: tuple | None
    ) -> Figure:
        epochs = np.arange(1, len(metrics["train_loss"]) + 1)
        for ax, (key, _, _), (train, val) in zip(self.axes, PANELS, self.curves, strict=True):
            for line in [line for line in ax.lines if line is not train and line is not val]:
                line.remove()  # the last run's marks, even those of a drawing that failed half-way
            ax.set_yscale("linear")  # the last run's loss panel may have been logarithmic
            train.set_data(epochs, metrics[f"train_{key}"])
            val.set_data(epochs, metrics[f"val_{key}"])
            _marks(ax, best_epoch, diverged_at, stopped_at)
            ax.relim()
            ax.autoscale_view()
            ax.legend(loc="best")  # replaces the last run's
        if len(epochs) and max(map(np.nanmax, (metrics["train_loss"], metrics["val_loss"]))) > 10 * np.nanmin(
            metrics["val_loss"]
        ):
            self.axes[0].set_yscale("log")  # an early spike would flatten the rest of the curve
        self.title.set_text(title)
        return self.figure


_DRAWN = threading.local()  # this thread's _FigureOne


def figure_one(
    metrics: dict,
    title: str,
    best_epoch: int | None = None,
    diverged_at: int | None = None,
    stopped_at: tuple | None = None,
) -> Figure:
    """The assignment's Figure 1: loss per epoch and accuracy per epoch, train against validation.

    `metrics` maps train_loss, val_loss, train_acc, val_acc to per-epoch lists (epoch 1 first). The Figure
    returned is this thread's, drawn again by its next call: save it before that."""
    if not len(metrics["train_loss"]):  # no curve to scale the axes to: a new figure's default limits
        return _FigureOne().draw(metrics, title, best_epoch, diverged_at, stopped_at)
    if getattr(_DRAWN, "figure", None) is None:
        _DRAWN.figure = _FigureOne()
    return _DRAWN.figure.draw(metrics, title, best_epoch, diverged_at, stopped_at)


def warm_up() -> None:
    """Draw a throwaway Figure 1 in memory: a sweep worker loads matplotlib's fonts before its first config."""
    figure_one({key: [1.0] for key in CURVES}, "").savefig(io.BytesIO(), format="png", dpi=100)
