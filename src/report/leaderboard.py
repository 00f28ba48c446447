"""The leaderboard: one row per config in the order of the one ranking, as CSV and Markdown, each config
shown by its difference from the defaults the sweep recorded."""

import csv
import io
import math

from src.config.identity import REPLICATE_KEY
from src.config.naming import format_override, format_value
from src.report.load import Member, SweepData, not_trained

SWEEP_OVERRIDE_PREFIXES = ("+sweep=", "sweep=", "++sweep=")


def config_diff(member: Member, defaults: dict | None, shared: dict) -> str:
    """The member's settings that differ from the sweep's recorded defaults (older sweeps, which did not
    record them: from the settings all members share)."""
    reference = {key: str(value) for key, value in defaults.items()} if defaults is not None else shared
    changed = [
        f"{key}={format_value(value)}"
        for key, value in sorted(member.params.items())
        if not not_trained(key)
        and key != REPLICATE_KEY
        and (reference.get(key) != value and not _same_number(reference.get(key), value))
    ]
    return " ".join(changed) or "(defaults)"


def _same_number(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _shared_params(data: SweepData) -> dict:
    members = [m for m in data.members if m.params]  # as in swept_keys: runs that logged none do not count
    first = members[0].params if members else {}
    return {key: value for key, value in first.items() if all(m.params.get(key) == value for m in members)}


def rows(data: SweepData) -> list[dict]:
    """Leaderboard rows, best first; configs that tie share a rank (marked '=' in Markdown)."""
    shared = _shared_params(data)
    table = []
    for group in data.groups:
        val_acc, val_acc_std = group.score.acc, group.score.acc_std
        test_acc, test_acc_std = group.stat("test_acc")
        table.append(
            {
                "rank": group.score.rank,
                "tied": group.score.tied,
                **{key: format_value(value) for key, value in zip(data.swept_keys, group.values, strict=True)},
                "best_val_acc": val_acc,
                "best_val_acc_std": val_acc_std,
                "test_acc": test_acc,
                "test_acc_std": test_acc_std,
                "best_val_ce": group.stat("best_val_ce")[0],
                "best_val_loss": group.stat("best_val_loss")[0],
                "best_epoch": group.stat("best_epoch")[0],
                "epochs_trained": max(m.epochs_logged for m in group.members),
                "seeds": len(group.members),
                "outcome": "/".join(group.score.outcomes),
                "reused": sum(m.reused for m in group.members),
                "config_diff": config_diff(group.members[0], data.defaults, shared),
                "run_ids": " ".join(m.run_id for m in group.members),
            }
        )
    return table


def to_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]) if table else ["rank"])
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def to_markdown(table: list[dict], swept: list) -> str:
    columns = [
        "rank",
        *swept,
        "best_val_acc",
        "test_acc",
        "epochs_trained",
        "seeds",
        "outcome",
        "config_diff",
        "run_ids",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        cells = []
        for column in columns:
            if column == "rank":
                cells.append(f"={row['rank']}" if row["tied"] else str(row["rank"]))
            elif column in ("best_val_acc", "test_acc") and row["seeds"] > 1 and not math.isnan(row[column]):
                cells.append(f"{row[column]:.4f} ± {row[column + '_std']:.4f}")
            else:
                cells.append(_cell(row[column]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reproduce_command(member: Member) -> str:
    """The command that trains this member's config again, values written as everywhere else."""
    overrides = [format_override(o) for o in member.overrides.split() if not o.startswith(SWEEP_OVERRIDE_PREFIXES)]
    return " ".join(["python -m src.run", *overrides])
