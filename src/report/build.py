"""Building a sweep's report: the figures, the leaderboard and the self-contained page (index.html), logged
under report/ on the sweep's parent run (and written to a folder when asked); the parent made to show the
result in MLflow's runs table (the winner's metrics, the sweep's params, a name that says what was swept,
a saved view of the table); and the summary to print."""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from src.config.naming import format_value
from src.outcomes import RESULTS
from src.report import figures, html, leaderboard, views
from src.report.figures import describe, sweep_label
from src.report.leaderboard import shared_params
from src.report.load import ConfigGroup, Member, SweepData, load_sweep, not_trained
from src.report.ranking import ACCURACY
from src.tracking import names, ui
from src.tracking.api import Store

WINNER_TAGS = ("winner.config", "winner.run_ids", "winner.val_acc", "winner.tied_with")
WINNER_VALUE = "winner.objective"  # 'best_val_ce=0.0512'
OBJECTIVE_TAG = "objective"  # on the parent: the metric the sweep is ranked by, and its direction
MAX_LISTED = 5  # configs named in one line of the summary
MAX_PARAM = 250  # characters of a swept key's values written as the parent's param


@dataclass
class Report:
    data: SweepData
    table: list
    findings: list[str] = field(default_factory=list)  # what the ranking says, as sentences
    written: list = field(default_factory=list)  # local files written
    logged: list = field(default_factory=list)  # artifact paths on the parent run


def build_report(
    store: Store, sweep_id: str, out_dir: Path | None = None, draw: bool = True, log: bool = True
) -> Report:
    """Read the sweep back and rank it; draw it, writing the files into `out_dir` when given, and with `log`
    log them under report/ on its parent run and record the winner there. `draw=False` only reads and ranks
    (the parent's report is current)."""
    data = load_sweep(store, sweep_id)
    report = Report(data, leaderboard.rows(data))
    report.findings = findings(data, report.table)
    if draw:
        _draw(store, report, out_dir, log)
    if log:
        record_on_parent(store, data)
    return report


def _draw(store: Store, report: Report, out_dir: Path | None, log: bool) -> None:
    data = report.data
    with tempfile.TemporaryDirectory() as scratch:
        folder = out_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for name in write_files(report, folder):
            if log:
                store.run_log(data.parent_run_id).log_file(folder / name, names.REPORT_DIR)
                report.logged.append(f"{names.REPORT_DIR}/{name}")
            if out_dir is not None:
                report.written.append(out_dir / name)


def write_files(report: Report, folder: Path) -> list[str]:
    """The report's files in `folder`: leaderboard (CSV, Markdown), figures, and index.html holding them all."""
    data = report.data
    (folder / "leaderboard.csv").write_text(leaderboard.to_csv(report.table))
    (folder / "leaderboard.md").write_text(
        leaderboard.to_markdown(report.table, data.swept_keys, data.objective.metric)
    )
    drawings = {"curves.png": figures.sweep_curves(data), **views.views(data)}
    pngs = {}
    for name, figure in drawings.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        figures.plt.close(figure)
        pngs[name] = buffer.getvalue()
        (folder / name).write_bytes(pngs[name])
    winner = winning_run(data)
    page = html.Page(report.findings, leaderboard.reproduce_command(winner) if winner else "", pngs)
    (folder / "index.html").write_text(html.render(data, report.table, page), encoding="utf-8")
    return ["index.html", "leaderboard.csv", "leaderboard.md", *drawings]


def _setting(data: SweepData, group: ConfigGroup) -> str:
    return describe(data.swept_keys, group.values) if data.swept_keys else group.members[0].name


def winner_tags(data: SweepData) -> dict:
    """What the parent run records of the winner: its config, runs and scores, and any config it ties with
    (exactly, or by the paired test over seeds)."""
    best = data.best
    if not best:
        return {WINNER_TAGS[0]: "(no config has a result)"}
    first = best[0]
    tied = [g for g in data.contenders if g is not first]
    return {
        WINNER_TAGS[0]: _setting(data, first),
        WINNER_TAGS[1]: " ".join(m.run_id for m in first.members),
        WINNER_TAGS[2]: f"{first.score.acc:.6g}",
        WINNER_TAGS[3]: "; ".join(_setting(data, g) for g in tied) or "-",
        WINNER_VALUE: f"{data.objective.metric}={first.score.value:.6g}",
        OBJECTIVE_TAG: f"{data.objective.metric} ({data.objective.direction})",
    }


def _swept_values(data: SweepData, position: int) -> str:
    """A swept key's values as the parent's param: '0.01, 0.1, 0.3' or, sampled, '20 values 1e-4 .. 0.9'."""
    values = sorted({g.values[position] for g in data.groups}, key=lambda v: (v is None, str(v)))
    shown = [format_value(v, 4) for v in values]
    listed = ", ".join(sorted(shown, key=lambda v: (_as_number(v), v)))
    if len(listed) <= MAX_PARAM:
        return listed
    numbers = sorted(n for n in (_as_number(v) for v in shown) if math.isfinite(n))
    if numbers:
        return f"{len(shown)} values {format_value(numbers[0], 4)} .. {format_value(numbers[-1], 4)}"
    return listed[: MAX_PARAM - 3] + "..."


def _as_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def parent_params(data: SweepData) -> dict[str, str]:
    """The sweep's params: what every config shares, and for each swept key the values it took."""
    params = {k: v for k, v in shared_params(data).items() if not not_trained(k) or k == OBJECTIVE_TAG}
    params.pop("seed", None)
    if data.seeds > 1:
        params["seed"] = f"{data.seeds} seeds"
    for position, key in enumerate(data.swept_keys):
        params[key] = _swept_values(data, position)
    return params


def parent_metrics(data: SweepData) -> dict[str, float]:
    """The winner's scores under the names its runs use, so the parent's row reads as the sweep's result."""
    if not data.best:
        return {}
    first = data.best[0]
    found = {
        data.objective.metric: first.score.value,
        ACCURACY: first.score.acc,
        "test_acc": first.stat("test_acc")[0],
        "n_configs": float(len(data.groups)),
    }
    return {k: v for k, v in found.items() if math.isfinite(v)}


def record_on_parent(store: Store, data: SweepData) -> None:
    """The parent shows the sweep's result: winner tags and metrics, the sweep's params (those it does not
    have yet: MLflow keeps a param's first value), a name that says what was swept, the saved view of the
    runs table that the printed link opens."""
    parent = store.run_log(data.parent_run_id)
    parent.set_tags(winner_tags(data))
    parent.log_metrics(parent_metrics(data))
    logged = store.run(data.parent_run_id).params
    parent.log_params({k: v for k, v in parent_params(data).items() if k not in logged})
    parent.rename(f"{sweep_label(data)} (sweep {data.sweep_id})")
    state = ui.view_state(ui.TableView(data.sweep_id, data.objective.metric, data.swept_keys))
    store.set_experiment_tags(data.experiment_id, {ui.view_tag(data.sweep_id): state})


def winning_run(data: SweepData, outcomes=RESULTS) -> Member | None:
    """The run of the winning config with the best objective (its best seed) among its runs that ended with
    one of `outcomes`, if any has one."""
    metric, cost = data.objective.metric, data.objective.cost
    candidates = [
        m for g in data.best[:1] for m in g.members if m.outcome in outcomes and not math.isnan(m.final(metric))
    ]
    return min(candidates, key=lambda m: cost(m.final(metric))) if candidates else None


def _listed(items: list[str]) -> str:
    more = f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def _winner_line(data: SweepData, row: dict) -> str:
    first, metric = data.best[0], data.objective.metric
    seeds = row["seeds"]

    def shown(name: str) -> str:
        value = row[name]
        spread = f" ± {row[name + '_std']:.4f}" if seeds > 1 and f"{name}_std" in row else ""
        return f"{name} {value:.4f}{spread}"

    scores = [shown(metric)] + [shown(m) for m in (ACCURACY, "test_acc") if m != metric and not math.isnan(row[m])]
    return f"best config: {_setting(data, first)}: {', '.join(scores)} ({seeds} run(s))"


def _ties_lines(data: SweepData, rows: list[dict]) -> list[str]:
    first = data.best[0]
    exact = [g for g in data.best if g is not first]
    lines = []
    if exact:
        lines.append(
            f"tied exactly with: {_listed([_setting(data, g) for g in exact])} (the same {data.objective.metric} "
            f"and {data.objective.tie_breaker}; more epochs or seeds would separate them)"
        )
    if sum(g.score.has_score for g in data.groups) < 2:  # one config (a sweep over seeds only): nothing to rank
        return lines
    if data.seeds < 2:
        lines.append(
            "one seed per config: ranks are single draws, each config's luck of the seed included; "
            "rerun with seed=0,1,2 to tell close configs apart"
        )
        return lines
    level = [(g, r) for g, r in zip(data.groups, rows, strict=True) if r["with_winner"] and g not in data.best]
    if level:
        lines.append(
            "cannot be told from the winner by a paired t-test over seeds (p >= 0.05): "
            + _listed([f"{_setting(data, g)} {r['vs_winner'].removeprefix('tied ')}" for g, r in level])
        )
    else:
        lines.append("every other config is worse than the winner by a paired t-test over its seeds (p < 0.05)")
    return lines


def _epochs_line(data: SweepData) -> str:
    unequal = [g for g in data.groups if g.epochs_range[0] != g.epochs_range[1] and g.score.has_score]
    if not unequal:
        return ""
    shown = [f"{_setting(data, g)} ({g.epochs_range[0]}-{g.epochs_range[1]} epochs)" for g in unequal]
    return f"ranked on seeds that trained different numbers of epochs (pruned or stopped early): {_listed(shown)}"


def findings(data: SweepData, rows: list[dict]) -> list[str]:
    """What the ranking says: the winner and its scores, what it ties with, what ranks rest on."""
    if not data.best:
        return ["no config has a result; nothing to rank"]
    lines = [_winner_line(data, rows[0]), *_ties_lines(data, rows)]
    lines.append(
        f"ranked by {data.objective.describe()}, the sweep's objective (what a sweeper is given); "
        f"best_val_acc beside it"
    )
    epochs = _epochs_line(data)
    return [*lines, epochs] if epochs else lines


def summary(report: Report) -> list[str]:
    """The lines a person reads at the end: the findings, how to reproduce the winner, where things are."""
    data = report.data
    lines = list(report.findings)
    winner = winning_run(data)
    if winner is not None:  # the winning config has a run with a result
        which = "its best seed" if report.table[0]["seeds"] > 1 else "it"
        lines.append(f"reproduce {which}: {leaderboard.reproduce_command(winner)}")
    lines.extend(f"wrote {path}" for path in report.written)
    if report.logged:
        lines.append(f"logged on parent run {data.parent_run_id}: " + ", ".join(report.logged))
    elif not report.written:
        lines.append(
            f"nothing new was trained: the report on parent run {data.parent_run_id} is current "
            f"({names.REPORT_DIR}/index.html there; a copy here: python -m src.report {data.sweep_id})"
        )
    return lines
