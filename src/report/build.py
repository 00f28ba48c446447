"""Building a sweep's report: the figures and the leaderboard, logged under report/ on the sweep's parent
run (and written to a folder when asked), the winner recorded on the parent, and a summary to print."""

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from src.outcomes import RESULTS
from src.report import figures, leaderboard
from src.report.figures import describe
from src.report.load import Member, SweepData, load_sweep
from src.tracking import names
from src.tracking.api import Store

WINNER_TAGS = ("winner.config", "winner.run_ids", "winner.val_acc", "winner.tied_with")


@dataclass
class Report:
    data: SweepData
    table: list
    written: list = field(default_factory=list)  # local files written
    logged: list = field(default_factory=list)  # artifact paths on the parent run


def build_report(
    store: Store, sweep_id: str, out_dir: Path | None = None, draw: bool = True, log: bool = True
) -> Report:
    """Read the sweep back and rank it; draw it, writing the files into `out_dir` when given, and with `log`
    log them under report/ on its parent run and tag the winner there. `draw=False` only reads and ranks
    (the parent's report is current)."""
    data = load_sweep(store, sweep_id)
    report = Report(data, leaderboard.rows(data))
    if not draw:
        return report
    with tempfile.TemporaryDirectory() as scratch:
        folder = out_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "leaderboard.csv").write_text(leaderboard.to_csv(report.table))
        (folder / "leaderboard.md").write_text(leaderboard.to_markdown(report.table, data.swept_keys))
        drawings = {"curves.png": figures.sweep_curves(data, f"sweep {data.sweep_id}: validation curves")}
        if data.swept_keys:
            drawings["heatmap.png"] = figures.sweep_heatmap(data, f"sweep {data.sweep_id}: best validation accuracy")
        for name, figure in drawings.items():
            figure.savefig(folder / name, dpi=100)
            figures.plt.close(figure)
        for name in ("leaderboard.csv", "leaderboard.md", *drawings):
            if log:
                store.run_log(data.parent_run_id).log_file(folder / name, names.REPORT_DIR)
                report.logged.append(f"{names.REPORT_DIR}/{name}")
            if out_dir is not None:
                report.written.append(out_dir / name)
    if log:
        store.run_log(data.parent_run_id).set_tags(winner_tags(data))
    return report


def winner_tags(data: SweepData) -> dict:
    """What the parent run records of the winner: its config, runs and score, and any config it ties with."""
    best = data.best
    if not best:
        return {WINNER_TAGS[0]: "(no config has a result)"}
    first = best[0]
    return {
        WINNER_TAGS[0]: describe(data.swept_keys, first.values) if data.swept_keys else first.members[0].name,
        WINNER_TAGS[1]: " ".join(m.run_id for m in first.members),
        WINNER_TAGS[2]: f"{first.score.acc:.6g}",
        WINNER_TAGS[3]: "; ".join(describe(data.swept_keys, g.values) for g in best[1:]) or "-",
    }


def winning_run(data: SweepData, outcomes=RESULTS) -> Member | None:
    """The run of the winning config with the best validation accuracy (its best seed) among its runs that
    ended with one of `outcomes`, if any has one."""
    candidates = [
        m for g in data.best[:1] for m in g.members if m.outcome in outcomes and not math.isnan(m.best_val_acc)
    ]
    return max(candidates, key=lambda m: m.best_val_acc) if candidates else None


def summary(report: Report) -> list[str]:
    """The lines a person reads at the end: the winner (and ties), how to reproduce it, where things are."""
    data = report.data
    best = data.best
    lines = []
    if not best:
        lines.append("no config has a result; nothing to rank")
    else:
        first, row = best[0], report.table[0]
        spread = f" ± {row['best_val_acc_std']:.4f}" if row["seeds"] > 1 else ""
        test = "" if math.isnan(row["test_acc"]) else f", test_acc {row['test_acc']:.4f}"
        setting = describe(data.swept_keys, first.values) if data.swept_keys else first.members[0].name
        lines.append(
            f"best config: {setting}: best val_acc {first.score.acc:.4f}{spread}{test} ({row['seeds']} run(s))"
        )
        if len(best) > 1:
            others = "; ".join(describe(data.swept_keys, g.values) for g in best[1:])
            lines.append(f"tied with: {others} (same accuracy and loss; more epochs or seeds would separate them)")
        which = "its best seed" if row["seeds"] > 1 else "it"
        winner = winning_run(data)
        if winner is not None:  # the winning config has a run with a result: it ranked first by one
            lines.append(f"reproduce {which}: {leaderboard.reproduce_command(winner)}")
    lines.extend(f"wrote {path}" for path in report.written)
    if report.logged:
        lines.append(f"logged on parent run {data.parent_run_id}: " + ", ".join(report.logged))
    elif not report.written:
        lines.append(f"nothing new was trained: the report on parent run {data.parent_run_id} is current")
    return lines
