"""Views of the objective over the swept keys, chosen by the shape of the sweep: a heatmap for a grid (few
values per key, most combinations tried), a scatter for a sampled sweep of one or two keys, parallel
coordinates for three or more; and for three or more keys, how much each one matters (importance.py).

Numbers that span two decades or more are drawn on log axes (symmetric log when zero is among them, as a
decay of 0 is); keys that are not numbers are drawn as categories. Colours run from dark (worse) to bright
(better) whatever the objective's direction; the winner is a star or a red frame, and the configs the
seeds cannot tell from it are ringed or framed in orange.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from src.config.naming import NAME_DIGITS, format_value
from src.plots import plt
from src.report.figures import HIGHLIGHT, short_key, title
from src.report.importance import importances
from src.report.load import ConfigGroup, SweepData, axis_values

MAX_GRID_VALUES = 10  # a key with more values than this is sampled, not a grid axis
GRID_FILL = 0.5  # ... and so is a sweep that tried fewer than this share of its combinations
DECADES = 2.0  # values spanning at least this many decades get a log axis
MIN_IMPORTANCE_CONFIGS = 6  # fewer configs with a result than this tell nothing about importance
TIED = "darkorange"  # configs the seeds cannot tell from the winner


def is_grid(data: SweepData) -> bool:
    """Whether the sweep is a grid: few values per swept key and most of their combinations tried."""
    counts = [len(axis_values(data, i)) for i in range(len(data.swept_keys))]
    if not counts or max(counts) > MAX_GRID_VALUES:
        return False
    return len(data.groups) >= GRID_FILL * math.prod(counts)


def numbers(values: list) -> np.ndarray | None:
    """The values as floats, or None when any is not a number."""
    try:
        return np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None


def scale_of(values: np.ndarray) -> str:
    """'log' for positive values spanning DECADES or more, 'symlog' when zero is among such values, else
    'linear'."""
    positive = values[values > 0]
    if (values < 0).any() or positive.size < 2 or math.log10(positive.max() / positive.min()) < DECADES:
        return "linear"
    return "log" if positive.size == values.size else "symlog"


def _set_scale(ax: Axes, axis: str, values: list) -> np.ndarray:
    """Positions of `values` on `axis` ('x' or 'y') with its scale set; categories get one tick each."""
    found = numbers(values)
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if found is None:
        labels = sorted({str(v) for v in values})
        (ax.set_xticks if axis == "x" else ax.set_yticks)(range(len(labels)), labels)
        return np.array([labels.index(str(v)) for v in values], dtype=float)
    scale = scale_of(found)
    if scale == "symlog":
        setter("symlog", linthresh=float(found[found > 0].min()))
    else:
        setter(scale)
    return found


def views(data: SweepData) -> dict[str, Figure]:
    """The figures that fit the sweep, by file name (none when nothing was swept)."""
    keys = data.swept_keys
    if not keys:
        return {}
    drawn: dict[str, Figure] = {}
    if is_grid(data):
        drawn["heatmap.png"] = heatmap(data)
    elif len(keys) <= 2:
        drawn["scatter.png"] = scatter(data)
    if len(keys) >= 3:
        drawn["parallel.png"] = parallel(data)
        if sum(g.score.has_score for g in data.groups) >= MIN_IMPORTANCE_CONFIGS:
            drawn["importance.png"] = importance(data)
    return drawn


def _colours(data: SweepData) -> tuple[Colormap, Normalize]:
    """(colour map, norm) of the objective: bright is better in either direction; on a log scale when the
    values span a decade or more (a few configs far behind would leave the rest one colour)."""
    values = [g.score.value for g in data.groups if g.score.has_score]
    cmap = plt.get_cmap("viridis" if data.objective.maximize else "viridis_r").with_extremes(bad="lightgrey")
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low > 0 and high / low >= 10:
        return cmap, LogNorm(low, high)
    return cmap, Normalize(low, high if high > low else low + 1e-12)


def _seeds_note(data: SweepData) -> str:
    return f" (mean of {data.seeds} seeds)" if data.seeds > 1 else ""


def _frame_of(group: ConfigGroup) -> str | None:
    """The frame colour of a cell or ring of a point: red for the winner, orange for its ties."""
    if not group.score.has_score:
        return None
    if group.score.rank == 1:
        return "red"
    return TIED if group.score.with_winner else None


# --- grids ------------------------------------------------------------------------------------------


def heatmap(data: SweepData) -> Figure:
    """The objective (mean over seeds) over the first two swept keys; the winner framed red, its ties orange."""
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
        mean[i, j] = group.score.value if group.score.has_score else np.nan
    fig, ax = plt.subplots(
        figsize=(max(1.7 * len(cols_v) + 3.8, 7.5), 0.9 * len(rows_v) + 3.0), constrained_layout=True
    )
    cmap, norm = _colours(data)
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), group in cells.items():
        _annotate_cell(ax, (i, j), group, data)
    ax.set_yticks(range(len(rows_v)), [format_value(v, NAME_DIGITS) for v in rows_v])
    ax.set_ylabel(keys[0])
    ax.set_xticks(range(len(cols_v)), [format_value(v, NAME_DIGITS) for v in cols_v] if len(keys) > 1 else [""])
    ax.set_xlabel(keys[1] if len(keys) > 1 else "")
    fig.colorbar(image, ax=ax, label=data.objective.metric + _seeds_note(data))
    fig.suptitle(title(data, data.objective.metric), fontsize=11)
    ax.set_title(
        f"cell: {data.objective.metric}"
        + (f" (mean ± std over {data.seeds} seeds), best val_acc below" if data.seeds > 1 else ", best val_acc below")
        + ("; the best over the other swept keys" if len(keys) > 2 else "")
        + "\n#k: rank; red frame: the winner; "
        + ("orange: tied with it (paired test over seeds), '='" if data.seeds > 1 else "'=': exact ties"),
        fontsize=9,
    )
    return fig


def _annotate_cell(ax: Axes, cell: tuple[int, int], group: ConfigGroup, data: SweepData) -> None:
    i, j = cell
    score = group.score
    if not score.has_score:
        label = "diverged" if group.diverged else ("/".join(score.outcomes) or "no result")
        ax.text(j, i, label, ha="center", va="center", fontsize=9, color="firebrick")
        return
    seeds = data.seeds
    text = f"{score.value:.4f}" + (f" ± {score.value_std:.4f}" if seeds > 1 else "")
    if data.objective.metric != "best_val_acc" and not math.isnan(score.acc):
        text += f"\nacc {score.acc:.4f}"
    if score.tied or (score.with_winner and score.rank != 1):
        text = "= " + text
    if group.pruned:
        text += f"\npruned @ {group.epochs_range[1]}"
    _, norm = _colours(data)
    brightness = float(norm(score.value)) if data.objective.maximize else 1 - float(norm(score.value))
    colour = "black" if brightness > 0.6 else "white"
    ax.text(j, i, text, ha="center", va="center", fontsize=8.5, color=colour)
    ax.text(j - 0.45, i - 0.4, f"#{score.rank}", ha="left", va="top", fontsize=7, color=colour)
    frame = _frame_of(group)
    if frame is not None:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=frame, linewidth=3))


# --- sampled sweeps ---------------------------------------------------------------------------------


def scatter(data: SweepData) -> Figure:
    """One key: the objective against it (error bars: std over seeds). Two keys: every config at its two
    values, coloured by the objective. Failed configs are grey crosses."""
    keys = data.swept_keys
    fig, ax = plt.subplots(figsize=(8.5, 6.2), constrained_layout=True)
    scored = [g for g in data.groups if g.score.has_score]
    failed = [g for g in data.groups if not g.score.has_score]
    cmap, norm = _colours(data)
    everything = scored + failed
    x = _set_scale(ax, "x", [g.values[0] for g in everything])
    if len(keys) == 1:
        y = np.array([g.score.value for g in scored])
        ax.errorbar(x[: len(scored)], y, yerr=[g.score.value_std for g in scored], fmt="none", ecolor="grey")
        ax.scatter(x[: len(scored)], y, c=y, cmap=cmap, norm=norm, s=40, zorder=3)
        ax.set_ylabel(data.objective.metric + _seeds_note(data))
        if failed:  # at the worst value drawn
            worst = (min(y) if data.objective.maximize else max(y)) if len(y) else 0.0
            edge = np.full(len(failed), worst)
            ax.scatter(x[len(scored) :], edge, marker="x", color="grey", s=50, label="no result (diverged, error)")
        heights = y
    else:
        y = _set_scale(ax, "y", [g.values[1] for g in everything])
        points = ax.scatter(
            x[: len(scored)], y[: len(scored)], c=[g.score.value for g in scored], cmap=cmap, norm=norm, s=55
        )
        fig.colorbar(points, ax=ax, label=data.objective.metric + _seeds_note(data))
        if failed:
            ax.scatter(x[len(scored) :], y[len(scored) :], marker="x", color="grey", s=50, label="no result")
        ax.set_ylabel(keys[1])
        heights = y[: len(scored)]
    _mark_best(ax, scored, x[: len(scored)], heights)
    ax.set_xlabel(keys[0])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title(data, data.objective.metric), fontsize=11)
    return fig


def _mark_best(ax: Axes, scored: list[ConfigGroup], x: np.ndarray, y: np.ndarray) -> None:
    for position, group in enumerate(scored):
        if group.score.rank <= HIGHLIGHT:
            ax.annotate(
                f"#{group.score.rank}",
                (x[position], y[position]),
                textcoords="offset points",
                xytext=(7, 5),
                fontsize=8,
            )
        frame = _frame_of(group)
        if frame == "red":
            ax.scatter(x[position], y[position], marker="*", s=260, color="red", zorder=4, label="winner")
        elif frame is not None:
            ax.scatter(x[position], y[position], s=150, facecolors="none", edgecolors=TIED, linewidths=2, zorder=4)
    if any(_frame_of(g) == TIED for g in scored):
        ax.scatter([], [], s=150, facecolors="none", edgecolors=TIED, linewidths=2, label="tied with the winner")


def _unit(values: list) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values mapped onto [0, 1] for a parallel axis (log or symlog over decades, categories evenly), and
    (position, label) ticks."""
    found = numbers(values)
    if found is None:
        labels = sorted({str(v) for v in values})
        spread = max(len(labels) - 1, 1)
        ticks = [(i / spread, label) for i, label in enumerate(labels)]
        return np.array([labels.index(str(v)) / spread for v in values]), ticks
    scale = scale_of(found)
    if scale == "log":
        shown = np.log10(found)
    elif scale == "symlog":
        floor = float(found[found > 0].min())
        shown = np.where(found > 0, np.log10(np.maximum(found, floor)) - math.log10(floor) + 1, 0.0)
    else:
        shown = found
    low, high = float(shown.min()), float(shown.max())
    unit = (shown - low) / (high - low) if high > low else np.full(len(shown), 0.5)
    picks = sorted(set(np.linspace(0, len(found) - 1, 5).astype(int)))
    order = np.argsort(found)
    ticks = [(float(unit[order[p]]), format_value(float(found[order[p]]), 3)) for p in picks]
    return unit, ticks


def parallel(data: SweepData) -> Figure:
    """Parallel coordinates: an axis per swept key and one for the objective, a line per config coloured by
    the objective (the best on top); failed configs grey and dashed, at the bottom of the objective axis."""
    keys = data.swept_keys
    groups = sorted(data.groups, key=lambda g: -g.score.rank if g.score.has_score else -math.inf)
    cmap, norm = _colours(data)
    columns = [_unit([g.values[i] for g in groups]) for i in range(len(keys))]
    objective = np.array([norm(g.score.value) if g.score.has_score else -0.05 for g in groups], dtype=float)
    fig, ax = plt.subplots(figsize=(2.2 * (len(keys) + 1) + 2.5, 6.0), constrained_layout=True)
    xs = np.arange(len(keys) + 1)
    for row, group in enumerate(groups):
        ys = [unit[row] for unit, _ in columns] + [objective[row]]
        if not group.score.has_score:
            ax.plot(xs, ys, color="grey", linestyle="--", linewidth=0.8, alpha=0.6)
            continue
        frame = _frame_of(group)
        width = 3.0 if frame == "red" else (2.0 if frame else 1.1)
        ax.plot(xs, ys, color=frame or cmap(norm(group.score.value)), linewidth=width, alpha=0.9)
    for position, (_, ticks) in enumerate(columns):
        for height, label in ticks:
            ax.text(position - 0.04, height, label, ha="right", va="center", fontsize=7)
    values = [g.score.value for g in groups if g.score.has_score]
    for value in sorted({min(values), max(values)} if values else set()):
        ax.text(len(keys) + 0.04, norm(value), f"{value:.4g}", ha="left", va="center", fontsize=7)
    for x in range(len(keys) + 1):
        ax.axvline(x, color="black", linewidth=0.8)
    ax.set_xticks(xs, [short_key(k) for k in keys] + [data.objective.metric])
    ax.set_yticks([])
    ax.set_xlim(-0.5, len(keys) + 0.5)
    ax.set_ylim(-0.1, 1.05)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=data.objective.metric + _seeds_note(data))
    fig.suptitle(title(data, "parallel coordinates"), fontsize=11)
    ax.set_title(
        "red: the winner; orange: tied with it; grey dashed: no result; log axes where values span decades",
        fontsize=9,
    )
    return fig


def importance(data: SweepData) -> Figure:
    """Each swept key's share of the ranks it explains alone, with its bootstrapped 90 % interval."""
    table = {key: [g.values[i] for g in data.groups] for i, key in enumerate(data.swept_keys)}
    costs = [data.objective.cost(g.score.value) if g.score.has_score else math.nan for g in data.groups]
    found = importances(table, costs)
    fig, ax = plt.subplots(figsize=(8.0, 0.6 * len(found) + 2.4), constrained_layout=True)
    positions = np.arange(len(found))[::-1]
    shares = np.array([f.share for f in found])
    errors = np.array([[f.share - f.low for f in found], [f.high - f.share for f in found]]).clip(min=0)
    ax.barh(positions, shares, xerr=errors, color="tab:blue", alpha=0.8, capsize=4)
    ax.set_yticks(positions, [f.key for f in found])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of the spread in ranks by {data.objective.metric} explained by the key alone")
    fig.suptitle(title(data, "hyperparameter importance"), fontsize=11)
    ax.set_title(
        f"adjusted eta-squared of the ranks over {len(costs)} configs; whiskers: 90 % bootstrap over configs",
        fontsize=9,
    )
    return fig
