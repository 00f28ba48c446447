"""The leaderboard: one row per config in the order of the one ranking (by the sweep's objective, accuracy
beside it), as CSV and Markdown. A config is shown by its swept values and by what else sets it apart from
the defaults the sweep recorded; what every config shares (the data, the epochs) is said once, as the
sweep's settings, not on every row."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection

from src.config.identity import REPLICATE_KEY
from src.config.naming import NAME_DIGITS, format_override, format_value
from src.report.load import ConfigGroup, Member, SweepData, not_trained
from src.report.ranking import ACCURACY, MAX_SEEDS, Score

SWEEP_OVERRIDE_PREFIXES = ("+sweep=", "sweep=", "++sweep=")
SHORT_ID = 8  # characters of a run id shown in Markdown and HTML (the CSV keeps them whole)
SHOWN_METRICS = (ACCURACY, "test_acc", "best_val_ce", "best_val_loss", "best_epoch")  # after the objective


def _same(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def shared_params(data: SweepData) -> dict[str, str]:
    """The params every member logged with one value (runs that logged none do not count)."""
    members = [m for m in data.members if m.params]
    first = members[0].params if members else {}
    return {key: value for key, value in first.items() if all(m.params.get(key) == value for m in members)}


def common_settings(data: SweepData) -> str:
    """What every config of the sweep sets apart from the recorded defaults (say, data.name=fashion_mnist
    epochs=30), written once for the whole sweep; '' when they all run on the defaults there."""
    if data.defaults is None:
        return ""
    changed = [
        f"{key}={format_value(value)}"
        for key, value in sorted(shared_params(data).items())
        if not not_trained(key) and key != REPLICATE_KEY and not _same(str(data.defaults.get(key)), value)
    ]
    return " ".join(changed)


def config_diff(member: Member, defaults: dict | None, shared: dict) -> str:
    """The member's settings that differ from the sweep's recorded defaults (older sweeps, which did not
    record them: from the settings all members share), leaving out what all members share (see
    `common_settings`)."""
    reference = {key: str(value) for key, value in defaults.items()} if defaults is not None else shared
    changed = [
        f"{key}={format_value(value)}"
        for key, value in sorted(member.params.items())
        if not not_trained(key) and key != REPLICATE_KEY and key not in shared and not _same(reference.get(key), value)
    ]
    return " ".join(changed) or "(defaults)"


def versus_text(score: Score, seeds: int) -> str:
    """How a config stands against the winner: 'winner', 'tied (p=0.41, ~12 seeds to separate)', 'worse
    (p=0.003)'; '' in a sweep of single seeds, where nothing can be tested."""
    if seeds < 2 or not score.has_score:
        return ""
    if score.rank == 1:
        return "winner" if not score.tied else "= winner"
    versus = score.versus
    if versus is None or not versus.tested:
        return f"not compared ({versus.paired if versus else 0} seed(s) paired with the winner's)"
    if versus.distinct:
        return f"worse (p={versus.p_value:.2g})"
    needed = versus.seeds_needed
    if needed is None:
        return "tied (equal on every seed)"
    more = f"more than {MAX_SEEDS}" if needed > MAX_SEEDS else f"~{needed}"
    return f"tied (p={versus.p_value:.2g}, {more} seeds to separate)"


def _metrics(group: ConfigGroup, objective: str) -> dict:
    row = {objective: group.score.value, f"{objective}_std": group.score.value_std}
    for metric in SHOWN_METRICS:
        if metric not in row:
            mean, std = group.stat(metric)
            row[metric] = mean
            if metric in (ACCURACY, "test_acc"):
                row[f"{metric}_std"] = std
    return row


def rows(data: SweepData) -> list[dict]:
    """Leaderboard rows, best first; configs that tie share a rank (marked '=' in Markdown)."""
    shared = shared_params(data)
    seeds = data.seeds
    table = []
    for group in data.groups:
        fewest, most = group.epochs_range
        versus = group.score.versus
        table.append(
            {
                "rank": group.score.rank,
                "tied": group.score.tied,
                "with_winner": group.score.with_winner,
                **{key: format_value(value) for key, value in zip(data.swept_keys, group.values, strict=True)},
                **_metrics(group, data.objective.metric),
                "vs_winner": versus_text(group.score, seeds),
                "p_value": versus.p_value if versus else math.nan,
                "seeds_to_separate": (versus.seeds_needed or "") if versus and not versus.distinct else "",
                "epochs_trained": most,
                "epochs_trained_min": fewest,
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


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def rank_text(row: dict) -> str:
    """'1', '=1' (an exact tie, or a config the seeds cannot tell from the winner), '3'."""
    if row["rank"] != 1 and row["with_winner"]:
        return f"=1 ({row['rank']})"
    return f"={row['rank']}" if row["tied"] else str(row["rank"])


def columns(table: list[dict], swept: list, objective: str) -> list[str]:
    """The columns a person reads: rank, the swept keys, the objective, accuracy, and what explains a rank."""
    names = ["rank", *swept, objective, *[m for m in (ACCURACY, "test_acc") if m != objective]]
    if any(row["vs_winner"] for row in table):
        names.append("vs_winner")
    names += ["epochs_trained", "seeds", "outcome"]
    if any(row["config_diff"] != "(defaults)" and not _only_swept(row["config_diff"], swept) for row in table):
        names.append("config_diff")
    return [*names, "run_ids"]


def _only_swept(diff: str, swept: list) -> bool:
    return all(part.split("=", 1)[0] in swept for part in diff.split())


def cell(row: dict, column: str, swept: Collection[str] = ()) -> str:
    """One cell as text: swept values to NAME_DIGITS digits (a sampled lr is 0.9904, not 0.990366273779091;
    the CSV and the reproduce command keep them whole), means ± std over seeds, epochs as 'fewest-most' when
    seeds trained unequally."""
    value = row[column]
    if column in swept:
        return format_value(value, NAME_DIGITS)
    if column == "rank":
        return rank_text(row)
    if column == "run_ids":  # the CSV has them whole
        return " ".join(run_id[:SHORT_ID] for run_id in value.split())
    if column == "epochs_trained" and row["epochs_trained_min"] != value:
        return f"{row['epochs_trained_min']}-{value}"
    if isinstance(value, float):
        spread = row.get(f"{column}_std")
        if row["seeds"] > 1 and spread is not None and not math.isnan(value):
            return f"{value:.4f} ± {spread:.4f}"
        return _number(value)
    return str(value)


def to_markdown(table: list[dict], swept: list, objective: str = "best_val_ce") -> str:
    names = columns(table, swept, objective)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table:
        lines.append("| " + " | ".join(cell(row, column, swept).replace("|", "\\|") for column in names) + " |")
    return "\n".join(lines) + "\n"


def _reproduced(override: str) -> str:
    """An override as the command to reproduce it writes it: numbers as everywhere else, except integers,
    kept as typed (`format_override` writes 33825 as 3.3825e4, which Hydra reads as a float and an int key
    such as tracking.ui_port or model.hidden_size refuses)."""
    value = override.partition("=")[2]
    return override if value.lstrip("-").isdigit() else format_override(override)


def reproduce_command(member: Member) -> str:
    """The command that trains this member's config again, values written as everywhere else."""
    overrides = [_reproduced(o) for o in member.overrides.split() if not o.startswith(SWEEP_OVERRIDE_PREFIXES)]
    return " ".join(["python -m src.run", *overrides])
