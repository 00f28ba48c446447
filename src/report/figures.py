"""The sweep's figures: validation curves in small multiples, and a heatmap of the score over two swept keys.

Readable at 16-48 configs: one panel per value of the first swept key, one colour per value of the second
(or per combination of the others), the top three configs drawn bold and labelled by rank. Over seeds,
the line is the mean (geometric for the loss, so it sits inside its band on a log axis) and the band runs
from the lowest to the highest seed: always positive for the loss, inside [0, 1] for accuracy.
"""

import math
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from src.config.naming import NAME_DIGITS, format_value
from src.plots import plt
from src.report.load import ConfigGroup, Member, SweepData, Values, axis_values, sort_value

MAX_PANELS = 6  # small multiples per row before the first key's values are drawn in one panel
HIGHLIGHT = 3  # configs drawn bold and labelled with their rank


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def describe(keys: list, values: tuple) -> str:
    return (
        " ".join(f"{short_key(k)}={format_value(v, NAME_DIGITS)}" for k, v in zip(keys, values, strict=True))
        or "(one config)"
    )


def _padded(curves: list) -> np.ndarray:
    """Curves of unequal length (diverged or pruned runs stop early) as rows padded with NaN."""
    length = max(len(c) for c in curves)
    return np.array([list(c) + [np.nan] * (length - len(c)) for c in curves], dtype=float)


def _band(curves: list, log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, low, high) per epoch over seeds: geometric mean on a log axis, else the mean; min and max."""
    rows = _padded(curves)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # epochs some seeds never reached are all-NaN
        centre = np.exp(np.nanmean(np.log(rows), axis=0)) if log else np.nanmean(rows, axis=0)
        return centre, np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)


def _layout(data: SweepData):
    """(panel values, key of the panels, colour keys) for the small multiples."""
    keys = data.swept_keys
    panels = axis_values(data, 0) if keys and len(axis_values(data, 0)) <= MAX_PANELS and len(keys) > 1 else [None]
    colour_keys = keys[1:] if panels != [None] else keys
    return panels, colour_keys


Colour = tuple[float, float, float, float]  # RGBA


def _colour_of(data: SweepData, colour_keys: list[str]) -> tuple[dict[Values, Colour], list[int]]:
    """A colour per combination of the colour keys' values, and those keys' positions among the swept keys."""
    positions = [data.swept_keys.index(k) for k in colour_keys]
    combos = sorted(
        {tuple(g.values[p] for p in positions) for g in data.groups}, key=lambda combo: [sort_value(v) for v in combo]
    )
    cmap = plt.get_cmap("viridis" if len(combos) <= 8 else "turbo")
    spread = max(len(combos) - 1, 1)
    return {combo: cmap(0.85 * i / spread) for i, combo in enumerate(combos)}, positions


LOSS = "val_ce"  # the validation cross-entropy, without the decay penalty: it compares configs of any decay


def _curve(member: Member, metric: str) -> list[float]:
    return list(member.history.get(metric) or [])


def sweep_curves(data: SweepData, title: str) -> Figure:
    """Validation cross-entropy (log scale) and accuracy per epoch, one line per config."""
    panels, colour_keys = _layout(data)
    colours, positions = _colour_of(data, colour_keys)
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(4.2 * len(panels) + 3.0, 8),
        squeeze=False,
        sharex=True,
        sharey="row",
        constrained_layout=True,
    )
    for column, panel in enumerate(panels):
        members = [g for g in data.groups if panel is None or g.values[0] == panel]
        for group in members:
            colour = colours[tuple(group.values[p] for p in positions)]
            for ax, metric in zip(axes[:, column], (LOSS, "val_acc"), strict=True):
                _draw_group(ax, group, metric, colour)
        if panel is not None:
            axes[0, column].set_title(f"{short_key(data.swept_keys[0])}={format_value(panel, NAME_DIGITS)}")
    _finish_axes(axes, data)
    fig.legend(handles=_legend(colours, colour_keys, data), loc="outside right center", title="config", fontsize=8)
    seeds = data.seeds
    fig.suptitle(
        title
        + (
            f"\nline: mean over {seeds} seeds (geometric for the loss), band: lowest to highest seed"
            if seeds > 1
            else ""
        ),
        fontsize=11,
    )
    return fig


def _draw_group(ax, group, metric: str, colour) -> None:
    curves = [curve for curve in (_curve(m, metric) for m in group.members) if curve]
    rank = group.score.rank if group.score.has_score else HIGHLIGHT + 1  # unranked: not bold
    bold = rank <= HIGHLIGHT
    if curves:
        centre, low, high = _band(curves, log=metric != "val_acc")
        epochs = np.arange(1, len(centre) + 1)
        ax.plot(
            epochs,
            centre,
            color=colour,
            linewidth=2.6 if bold else 1.0,
            alpha=1.0 if bold else 0.75,
            zorder=3 if bold else 2,
        )
        if len(curves) > 1:
            ax.fill_between(epochs, low, high, color=colour, alpha=0.10 if bold else 0.05, linewidth=0)
        if bold:  # labels of neighbouring lines are staggered so they do not overprint each other
            ax.annotate(
                f"#{rank}",
                (epochs[-1], centre[-1]),
                textcoords="offset points",
                xytext=(4 + 16 * (rank - 1), 0),
                fontsize=8,
                fontweight="bold",
                color=colour,
                va="center",
            )
        if group.pruned:
            ax.plot(epochs[-1], centre[-1], marker="|", markersize=12, color="black", linestyle="none", zorder=4)
    if group.diverged:
        _mark_divergence(ax, group, metric, curves)


def _mark_divergence(ax, group, metric: str, curves: list) -> None:
    """A red X where the config diverged: at its last logged point, or (diverged in its first epoch,
    nothing logged) at epoch 1 on the edge of the panel that its cost blew through."""
    if curves:
        centre, _, _ = _band(curves, log=metric != "val_acc")
        ax.plot(len(centre), centre[-1], marker="X", color="red", markersize=10, linestyle="none", zorder=5)
        return
    edge = 0.97 if metric != "val_acc" else 0.03
    ax.plot(
        1,
        edge,
        marker="X",
        color="red",
        markersize=10,
        linestyle="none",
        zorder=5,
        transform=ax.get_xaxis_transform(),
        clip_on=False,
    )


def _finish_axes(axes, data: SweepData) -> None:
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[1]:
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("Validation cross-entropy (log scale)")
    low = _accuracy_floor(data)
    axes[1, 0].set_ylim(low, 1.0)
    zoom = f"\n(axis from {low:.2f}; lower values not shown)" if low > 0 else ""
    axes[1, 0].set_ylabel("Validation accuracy" + zoom)


def _accuracy_floor(data: SweepData) -> float:
    """Zoom the accuracy axis onto the configs with a result, and say so on the axis."""
    points = [v for g in data.groups for m in g.members if m.outcome.is_result for v in m.history.get("val_acc", [])]
    if not points:
        return 0.0
    low = float(np.percentile(points, 5)) - 0.02
    return 0.0 if low < 0.3 else math.floor(low * 50) / 50


def _legend(colours: dict, colour_keys: list, data: SweepData) -> list:
    handles = [
        Line2D([], [], color=colour, linewidth=2.5, label=describe(colour_keys, combo))
        for combo, colour in colours.items()
    ]
    handles.append(Line2D([], [], color="grey", linewidth=2.6, label=f"bold, #k: the top {HIGHLIGHT} by rank"))
    if any(g.diverged for g in data.groups):
        handles.append(Line2D([], [], color="red", marker="X", linestyle="none", label="diverged here"))
    if any(g.pruned for g in data.groups):
        handles.append(Line2D([], [], color="black", marker="|", markersize=12, linestyle="none", label="pruned here"))
    return handles


def sweep_heatmap(data: SweepData, title: str) -> Figure:
    """The score (mean best validation accuracy over seeds) over two swept keys; the winner framed."""
    keys = data.swept_keys
    rows_v = axis_values(data, 0)
    cols_v = axis_values(data, 1) if len(keys) > 1 else [None]
    # (i, j) -> the best-ranked group in that cell (with more than two keys, several share one)
    cells: dict[tuple[int, int], ConfigGroup] = {}
    for group in data.groups:  # ranked: the first one seen in a cell is its best
        key = (rows_v.index(group.values[0]), cols_v.index(group.values[1]) if len(keys) > 1 else 0)
        cells.setdefault(key, group)
    mean = np.full((len(rows_v), len(cols_v)), np.nan)
    for (i, j), group in cells.items():
        mean[i, j] = group.score.acc if group.score.has_score else np.nan
    fig, ax = plt.subplots(
        figsize=(max(1.7 * len(cols_v) + 3.8, 7.5), 0.9 * len(rows_v) + 2.8), constrained_layout=True
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    finite = mean[np.isfinite(mean)]
    image = ax.imshow(
        np.ma.masked_invalid(mean),
        cmap=cmap,
        aspect="auto",
        vmin=finite.min() if finite.size else 0,
        vmax=finite.max() if finite.size else 1,
    )
    for (i, j), group in cells.items():
        _annotate_cell(ax, i, j, group, finite, data.seeds)
    ax.set_yticks(range(len(rows_v)), [format_value(v, NAME_DIGITS) for v in rows_v])
    ax.set_ylabel(keys[0] if keys else "")
    ax.set_xticks(range(len(cols_v)), [format_value(v, NAME_DIGITS) for v in cols_v] if len(keys) > 1 else [""])
    ax.set_xlabel(keys[1] if len(keys) > 1 else "")
    seeds = data.seeds
    fig.colorbar(image, ax=ax, label="best validation accuracy" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
    fig.suptitle(title, fontsize=11)
    ax.set_title(
        "cell: best val_acc over the epochs"
        + (f", mean ± std over {seeds} seeds" if seeds > 1 else "")
        + ("; the best over the other swept keys" if len(keys) > 2 else "")
        + "\n#k: rank (ties broken by validation loss); red frame: the winner (ties: all framed, marked =)",
        fontsize=9,
    )
    return fig


def _annotate_cell(ax, i: int, j: int, group, finite: np.ndarray, seeds: int) -> None:
    score = group.score
    if score.has_score:
        text = f"{score.acc:.4f}" + (f"\n± {score.acc_std:.4f}" if seeds > 1 else "")
        if score.tied:
            text = "= " + text
        if group.pruned:
            stopped = max(m.epochs_logged for m in group.members)
            text += f"\npruned @ {stopped}"
        bright = finite.size and score.acc > finite.min() + 0.6 * (finite.max() - finite.min())
        colour = "black" if bright else "white"
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color=colour)
        ax.text(j - 0.45, i - 0.4, f"#{score.rank}", ha="left", va="top", fontsize=7, color=colour)
        if score.rank == 1:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=3))
    else:
        label = "diverged" if group.diverged else ("/".join(score.outcomes) or "no result")
        ax.text(j, i, label, ha="center", va="center", fontsize=9, color="firebrick")
