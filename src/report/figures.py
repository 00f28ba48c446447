"""The sweep's validation curves in small multiples, and what every figure of the report shares: its title
(data, epochs, objective) and the way configs are named.

Readable at 16-48 configs: one panel per value of the first swept key, one colour per value of the second
(or per combination of the others); with more combinations than a legend can hold (a sampled sweep), one
colour per rank instead, on a colour bar. The top three configs are drawn bold and labelled by rank. Over
seeds, the line is the mean (geometric for the loss, so it sits inside its band on a log axis) and the band
runs from the lowest to the highest seed: always positive for the loss, inside [0, 1] for accuracy.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.mathtext import MathTextParser
from matplotlib.ticker import MaxNLocator

from src.config.naming import NAME_DIGITS, format_value
from src.plots import plt
from src.report.load import ConfigGroup, Member, SweepData, Values, axis_values, sort_value


def warm_up() -> threading.Thread:
    """Build matplotlib's mathtext parser (the report's logarithmic ticks use it; it is built at first use) in
    a thread of its own. A sweep's parent does it while its workers train: a Ctrl-C, which only the main
    thread receives, then cannot stop pyparsing half-way through that grammar, whose parts complain with a
    traceback on stderr as they are collected."""
    thread = threading.Thread(target=lambda: MathTextParser("agg").parse(r"$10^{-1}$", dpi=100), daemon=True)
    thread.start()
    return thread


MAX_PANELS = 6  # small multiples per row before the first key's values are drawn in one panel
MAX_LEGEND = 12  # colour combinations named in a legend; beyond it, colours are ranks on a colour bar
HIGHLIGHT = 3  # configs drawn bold and labelled with their rank
LOSS = "val_ce"  # the validation cross-entropy, without the decay penalty: it compares configs of any decay
Colour = tuple[float, float, float, float]  # RGBA


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def describe(keys: list, values: tuple) -> str:
    return (
        " ".join(f"{short_key(k)}={format_value(v, NAME_DIGITS)}" for k, v in zip(keys, values, strict=True))
        or "(one config)"
    )


def _shared(data: SweepData, key: str) -> str:
    """The value every member logged for `key` ('a-b' for numbers that differ, '' when none logged it)."""
    values = sorted({m.params[key] for m in data.members if key in m.params}, key=sort_value)
    if not values:
        return ""
    if len(values) == 1:
        return format_value(values[0])
    return f"{format_value(values[0])}-{format_value(values[-1])}"


def sweep_label(data: SweepData) -> str:
    """What the sweep is, in a few words: 'fashion_mnist, 30 epochs, lr x decay, 48 runs'."""
    parts = [_shared(data, "data.name") or "data?"]
    epochs = _shared(data, "epochs")
    if epochs:
        parts.append(f"{epochs} epochs")
    if data.swept_keys:
        parts.append(" x ".join(short_key(k) for k in data.swept_keys))
    parts.append(f"{len(data.groups)} configs" + (f" x {data.seeds} seeds" if data.seeds > 1 else ""))
    return ", ".join(parts)


def title(data: SweepData, what: str) -> str:
    """A figure's title: what it shows, then the sweep's data, epochs, objective and id."""
    return f"{what}: {sweep_label(data)}\nranked by {data.objective.describe()}; sweep {data.sweep_id}"


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


def _layout(data: SweepData) -> tuple[list, list[str]]:
    """(panel values, colour keys) for the small multiples."""
    keys = data.swept_keys
    panels = axis_values(data, 0) if keys and len(axis_values(data, 0)) <= MAX_PANELS and len(keys) > 1 else [None]
    colour_keys = keys[1:] if panels != [None] else keys
    return panels, colour_keys


class Palette:
    """A colour per config: by the combination of the colour keys' values (a legend), or when there are more
    combinations than MAX_LEGEND, by rank (a colour bar)."""

    def __init__(self, data: SweepData, colour_keys: list[str]):
        self.positions = [data.swept_keys.index(k) for k in colour_keys]
        combos = sorted({self.combo(g) for g in data.groups}, key=lambda combo: [sort_value(v) for v in combo])
        self.by_rank = len(combos) > MAX_LEGEND
        self.ranks = max((g.score.rank for g in data.groups), default=1)
        self.cmap = plt.get_cmap("viridis" if len(combos) <= 8 or self.by_rank else "turbo")
        spread = max(len(combos) - 1, 1)
        self.colours: dict[Values, Colour] = {combo: self.cmap(0.85 * i / spread) for i, combo in enumerate(combos)}

    def combo(self, group: ConfigGroup) -> Values:
        return tuple(group.values[p] for p in self.positions)

    def norm(self) -> Normalize:
        return Normalize(1, max(self.ranks, 2))

    def of(self, group: ConfigGroup) -> Colour:
        if self.by_rank:
            return self.cmap(0.9 * (1 - self.norm()(group.score.rank)))  # the best: bright
        return self.colours[self.combo(group)]


def _curve(member: Member, metric: str) -> list[float]:
    return list(member.history.get(metric) or [])


def sweep_curves(data: SweepData, heading: str | None = None) -> Figure:
    """Validation cross-entropy (log scale) and accuracy per epoch, one line per config."""
    panels, colour_keys = _layout(data)
    palette = Palette(data, colour_keys)
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(4.2 * len(panels) + (6.0 if palette.by_rank else 3.0), 8),
        squeeze=False,
        sharex=True,
        sharey="row",
        constrained_layout=True,
    )
    for column, panel in enumerate(panels):
        members = [g for g in data.groups if panel is None or g.values[0] == panel]
        for group in members:
            for ax, metric in zip(axes[:, column], (LOSS, "val_acc"), strict=True):
                _draw_group(ax, group, metric, palette.of(group))
        if panel is not None:
            axes[0, column].set_title(f"{short_key(data.swept_keys[0])}={format_value(panel, NAME_DIGITS)}")
    _finish_axes(axes, data)
    if palette.by_rank:
        bar = fig.colorbar(
            plt.cm.ScalarMappable(norm=palette.norm(), cmap=palette.cmap.reversed()),
            ax=axes,
            location="right",
            shrink=0.6,
            aspect=30,
        )
        bar.set_label(f"rank by {data.objective.metric} (1: best)")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        bar.ax.invert_yaxis()
    handles = _legend(palette, colour_keys, data)
    fig.legend(handles=handles, loc="outside right center", title="config", fontsize=8)
    seeds = data.seeds
    band = f"\nline: mean over {seeds} seeds (geometric for the loss), band: lowest to highest seed"
    fig.suptitle((heading or title(data, "validation curves")) + (band if seeds > 1 else ""), fontsize=11)
    return fig


def _draw_group(ax, group: ConfigGroup, metric: str, colour: Colour) -> None:
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
        _mark_divergence(ax, metric, curves)


def _mark_divergence(ax, metric: str, curves: list) -> None:
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
    low, high = accuracy_range(data)
    axes[1, 0].set_ylim(low, high)
    zoom = f"\n(axis {low:.2f}-{high:.2f}; values outside not shown)" if (low, high) != (0.0, 1.0) else ""
    axes[1, 0].set_ylabel("Validation accuracy" + zoom)


def accuracy_range(data: SweepData) -> tuple[float, float]:
    """The accuracy axis, zoomed onto the configs with a result: from a little under their 5th percentile
    to a little over their best (steps of 0.02), the whole [0, 1] when they spread over most of it."""
    points = [v for g in data.groups for m in g.members if m.outcome.is_result for v in m.history.get("val_acc", [])]
    finite = [p for p in points if math.isfinite(p)]
    if not finite:
        return 0.0, 1.0
    low = float(np.percentile(finite, 5)) - 0.02
    low = 0.0 if low < 0.3 else math.floor(low * 50) / 50
    high = min(1.0, math.ceil((max(finite) + 0.01) * 50) / 50)
    return min(low, high - 0.04), high


def _legend(palette: Palette, colour_keys: list, data: SweepData) -> list:
    keys = data.swept_keys
    if not palette.by_rank:
        handles = [
            Line2D([], [], color=colour, linewidth=2.5, label=describe(colour_keys, combo))
            for combo, colour in palette.colours.items()
        ]
    else:  # the top configs by name; the rest are on the colour bar
        handles = [
            Line2D([], [], color=palette.of(g), linewidth=2.6, label=f"#{g.score.rank} {describe(keys, g.values)}")
            for g in data.groups[:HIGHLIGHT]
            if g.score.has_score
        ]
    handles.append(Line2D([], [], color="grey", linewidth=2.6, label=f"bold, #k: the top {HIGHLIGHT} by rank"))
    if any(g.diverged for g in data.groups):
        handles.append(Line2D([], [], color="red", marker="X", linestyle="none", label="diverged here"))
    if any(g.pruned for g in data.groups):
        handles.append(Line2D([], [], color="black", marker="|", markersize=12, linestyle="none", label="pruned here"))
    return handles
