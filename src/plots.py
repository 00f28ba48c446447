"""Figure builders: data in, matplotlib Figure out (Agg backend, no files written here)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TRAIN_STYLE = dict(color="tab:blue", marker="o", markersize=3)
VAL_STYLE = dict(color="tab:orange", marker="s", markersize=3)


def figure_one(metrics: dict, title: str, best_epoch: int | None = None, diverged_at: int | None = None) -> Figure:
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
        ax.legend(loc="best")
    loss_ax.set_title("Loss per epoch")
    acc_ax.set_title("Accuracy per epoch")
    if len(epochs) and max(map(np.nanmax, (metrics["train_loss"], metrics["val_loss"]))) > 10 * np.nanmin(
        metrics["val_loss"]
    ):
        loss_ax.set_yscale("log")  # an early spike would flatten the rest of the curve
    fig.suptitle(title)
    return fig


# --- sweep comparisons: `data` is a report.SweepData (groups of runs per config) ----------------------

LINE_STYLES = ("-", "--", ":", "-.")


def value_label(value) -> str:
    """A param value as people write it: '10000.0' -> '1e4', '0.0001' -> '1e-4', 'sgd' -> 'sgd'."""
    from src.config import format_number

    try:
        return format_number(float(value))
    except (TypeError, ValueError):
        return str(value)


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _padded(curves: list) -> np.ndarray:
    """Curves of unequal length (diverged runs stop early) as rows padded with NaN."""
    length = max(len(c) for c in curves)
    return np.array([list(c) + [np.nan] * (length - len(c)) for c in curves], dtype=float)


def _palette(values: list) -> dict:
    cmap = plt.get_cmap("viridis")
    if len(values) == 1:
        return {values[0]: cmap(0.35)}
    return {value: cmap(0.9 * i / (len(values) - 1)) for i, value in enumerate(values)}


def _axis_values(data, position: int) -> list:
    seen = []
    for group in data.groups:
        if group.values[position] not in seen:
            seen.append(group.values[position])
    return seen  # groups are already sorted numerically


def sweep_curves(data, title: str) -> Figure:
    """Validation loss and accuracy per epoch, one line per config (mean +- std band over seeds).

    Colour encodes the first swept key, line style the second; a red X marks where a config diverged.
    """
    from matplotlib.lines import Line2D

    keys = data.swept_keys
    colors = _palette(_axis_values(data, 0)) if keys else {(): "tab:blue"}
    styles = {v: LINE_STYLES[i % len(LINE_STYLES)] for i, v in enumerate(_axis_values(data, 1))} if len(keys) > 1 else {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    diverged_early = []
    for group in data.groups:
        color = colors[group.values[0]] if keys else "tab:blue"
        style = styles.get(group.values[1], "-") if len(keys) > 1 else "-"
        for ax, metric in zip(axes, ("val_loss", "val_acc")):
            curves = [m.history.get(metric) for m in group.members if m.history.get(metric)]
            if not curves:
                continue
            rows = _padded(curves)
            with np.errstate(invalid="ignore"):
                mean, std = np.nanmean(rows, axis=0), np.nanstd(rows, axis=0)
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, color=color, linestyle=style, linewidth=1.6)
            if len(curves) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
            if group.diverged:
                ax.plot(epochs[-1], mean[-1], marker="X", color="red", markersize=10, linestyle="none")
        if group.diverged and not any(m.history.get("val_loss") for m in group.members):
            diverged_early.append(" ".join(f"{short_key(k)}={value_label(v)}" for k, v in zip(keys, group.values)))
    axes[0].set_yscale("log")
    for ax, label in zip(axes, ("Validation cost (log scale)", "Validation accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _zoom_accuracy(axes[1], data)
    handles = [
        Line2D([], [], color=c, linewidth=2.5, label=f"{keys[0]}={value_label(v)}") for v, c in colors.items()
    ] if keys else []
    handles += [
        Line2D([], [], color="black", linestyle=s, label=f"{keys[1]}={value_label(v)}") for v, s in styles.items()
    ]
    if any(g.diverged for g in data.groups):
        handles.append(Line2D([], [], color="red", marker="X", linestyle="none", label="diverged here"))
    if handles:
        fig.legend(handles=handles, loc="outside right center", title="config")
    note = f"  (diverged in epoch 1: {'; '.join(diverged_early)})" if diverged_early else ""
    extra = f"  other swept keys: {', '.join(keys[2:])}" if len(keys) > 2 else ""
    seeds = max(len(g.members) for g in data.groups) if data.groups else 0
    fig.suptitle(title + (f" — mean ± std over {seeds} seeds" if seeds > 1 else "") + extra + note)
    return fig


def _zoom_accuracy(ax, data) -> None:
    """Zoom the accuracy axis onto the finished configs' curves, so close winners can be told apart."""
    points = [v for g in data.groups for m in g.members if m.outcome == "finished" for v in m.history["val_acc"]]
    if points:
        low, high = np.percentile(points, 5), max(points)
        ax.set_ylim(max(0.0, low - 0.02), min(1.0, high + 0.01))


def sweep_heatmap(data, title: str) -> Figure:
    """Best validation accuracy over two swept keys (mean +- std over seeds); the winner is framed."""
    from matplotlib.patches import Rectangle

    keys = data.swept_keys
    rows_v = _axis_values(data, 0)
    cols_v = _axis_values(data, 1) if len(keys) > 1 else [None]
    mean = np.full((len(rows_v), len(cols_v)), np.nan)
    std = np.full_like(mean, np.nan)
    diverged = np.zeros(mean.shape, dtype=bool)
    for group in data.groups:
        i = rows_v.index(group.values[0])
        j = cols_v.index(group.values[1]) if len(keys) > 1 else 0
        m, s = group.stat("best_val_acc")
        if not np.isnan(m) and (np.isnan(mean[i, j]) or m > mean[i, j]):  # >2 keys: the best of the cell
            mean[i, j], std[i, j] = m, s
        diverged[i, j] |= group.diverged and np.isnan(m)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols_v) + 3.5, 1.0 * len(rows_v) + 2.2), constrained_layout=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    finite = mean[np.isfinite(mean)]
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, aspect="auto",
                      vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
    seeds = max(len(g.members) for g in data.groups)
    for i in range(len(rows_v)):
        for j in range(len(cols_v)):
            if np.isfinite(mean[i, j]):
                text = f"{mean[i, j]:.4f}" + (f"\n± {std[i, j]:.4f}" if seeds > 1 else "")
                bright = finite.size and mean[i, j] > finite.min() + 0.6 * (finite.max() - finite.min())
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color="black" if bright else "white")
            else:
                ax.text(j, i, "diverged" if diverged[i, j] else "no result", ha="center", va="center",
                        fontsize=9, color="firebrick")
    if finite.size:
        i, j = np.unravel_index(np.nanargmax(mean), mean.shape)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=3))
    ax.set_yticks(range(len(rows_v)), [value_label(v) for v in rows_v])
    ax.set_ylabel(keys[0])
    ax.set_xticks(range(len(cols_v)), [value_label(v) for v in cols_v] if len(keys) > 1 else [""])
    ax.set_xlabel(keys[1] if len(keys) > 1 else "")
    fig.colorbar(image, ax=ax, label="best validation accuracy" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
    ax.set_title(
        title + "\ncell: best val_acc over the epochs" + (f", mean ± std over {seeds} seeds" if seeds > 1 else "")
        + ("; best over the other swept keys" if len(keys) > 2 else "") + "; red frame: the winner"
    )
    return fig
