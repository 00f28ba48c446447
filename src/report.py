"""Compare the configs of a sweep, from what MLflow holds: `python -m src.report <sweep_id>`.

Reads the parent run's manifest and every member run's metrics back from MLflow, then logs on the
parent run: validation curves overlaid (colour by the first swept key, line style by the second,
mean +- std over seeds), a heatmap of the best validation accuracy over two swept keys, and a
leaderboard (CSV and Markdown) ranked by best validation accuracy. Never trains anything.
"""

import argparse
import csv
import io
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from src.plots import value_label

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
PREFERRED_AXES = ("optimizer.lr", "model.decay")  # the assignment's question, when both are swept
IGNORED_KEYS = ("tracking.",)
REPLICATE_KEY = "seed"
SWEEP_OVERRIDE_PREFIXES = ("+sweep=", "sweep=")


@dataclass
class Member:
    """One run of the sweep, as read back from MLflow."""

    run_id: str
    name: str
    outcome: str
    params: dict
    metrics: dict
    overrides: str
    history: dict = field(default_factory=dict)  # metric -> per-epoch list

    @property
    def best_val_acc(self) -> float:
        values = self.history.get("val_acc") or []
        return max(values) if values else math.nan


@dataclass
class ConfigGroup:
    """The runs of one config across seeds."""

    values: tuple  # the swept values (seed excluded), in the order of `swept_keys`
    members: list

    def stat(self, metric: str) -> tuple[float, float]:
        """Mean and standard deviation over finished seeds (NaN when none finished)."""
        if metric == "best_val_acc":
            values = [m.best_val_acc for m in self.members if m.outcome == "finished"]
        else:
            values = [m.metrics[metric] for m in self.members if m.outcome == "finished" and metric in m.metrics]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values))

    @property
    def diverged(self) -> bool:
        return any(m.outcome == "diverged" for m in self.members)


@dataclass
class SweepData:
    sweep_id: str
    parent_run_id: str
    members: list
    swept_keys: list
    groups: list


# --- reading ----------------------------------------------------------------------------------------


def find_parent(client, sweep_id: str):
    """The parent run of a sweep, searched across every experiment of the tracking store."""
    from src import tracking

    for experiment in client.search_experiments():
        found = tracking.search_all(
            client, experiment.experiment_id, f"tags.sweep_id = '{sweep_id}' and tags.`netsweep.role` = 'sweep'"
        )
        if found:
            return found[0]
    raise LookupError(f"no sweep with id {sweep_id!r} in this tracking store; check the id and MLFLOW_TRACKING_URI")


def load_sweep(client, sweep_id: str) -> SweepData:
    from src import tracking

    parent = find_parent(client, sweep_id)
    manifest = tracking.read_json(client, parent.info.run_id, "sweep.json")
    run_ids = [entry["run_id"] for entry in manifest.get("configs", []) if entry.get("run_id")]
    if not run_ids:  # no manifest: fall back to the runs tagged with the sweep
        children = tracking.search_all(client, parent.info.experiment_id, f"tags.sweep_id = '{sweep_id}'")
        run_ids = [run.info.run_id for run in children if run.info.run_id != parent.info.run_id]
    members = [_member(client, client.get_run(run_id)) for run_id in run_ids]
    keys = swept_keys(members)
    return SweepData(sweep_id, parent.info.run_id, members, keys, group_members(members, keys))


def _member(client, run) -> Member:
    history = {}
    for key in ("val_loss", "val_acc", "train_loss", "train_acc"):
        points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        history[key] = [m.value for m in points]
    tags = run.data.tags
    return Member(
        run.info.run_id, run.info.run_name, tags.get("outcome", run.info.status.lower()),
        dict(run.data.params), dict(run.data.metrics), tags.get("overrides", ""), history,
    )


def swept_keys(members: list) -> list:
    """Params whose value differs between member runs (tracking settings and the seed excluded)."""
    keys = sorted({key for m in members for key in m.params})
    varying = [
        key for key in keys
        if not key.startswith(IGNORED_KEYS) and key != REPLICATE_KEY
        and len({m.params.get(key) for m in members}) > 1
    ]
    preferred = [key for key in PREFERRED_AXES if key in varying]
    return preferred + [key for key in varying if key not in preferred]


def _sort_value(value: Optional[str]):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def group_members(members: list, keys: list) -> list:
    groups = defaultdict(list)
    for member in members:
        groups[tuple(member.params.get(key) for key in keys)].append(member)
    return [ConfigGroup(values, groups[values]) for values in sorted(groups, key=lambda v: [_sort_value(x) for x in v])]


# --- leaderboard --------------------------------------------------------------------------------------


def default_params() -> dict:
    """The flattened default config, to show each config as its difference from the defaults."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.config import flatten, register_configs, to_plain

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose("config")
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config")
    return {key: str(value) for key, value in flatten(to_plain(cfg)).items()}


def config_diff(member: Member, defaults: dict) -> str:
    changed = [
        f"{key}={value}" for key, value in sorted(member.params.items())
        if not key.startswith(IGNORED_KEYS) and key != REPLICATE_KEY and defaults.get(key) != value
    ]
    return " ".join(changed) or "(defaults)"


def ranked(groups: list) -> list:
    """Groups best first by mean best validation accuracy (ties: lower validation loss); failures last."""
    def key(group):
        acc, loss = group.stat("best_val_acc")[0], group.stat("best_val_loss")[0]
        return (math.inf, 0.0) if math.isnan(acc) else (-acc, loss if not math.isnan(loss) else math.inf)
    return sorted(groups, key=key)


def leaderboard_rows(data: SweepData, defaults: dict) -> list[dict]:
    rows = []
    for rank, group in enumerate(ranked(data.groups), start=1):
        val_acc, val_acc_std = group.stat("best_val_acc")
        test_acc, test_acc_std = group.stat("test_acc")
        outcomes = sorted({m.outcome for m in group.members})
        rows.append({
            "rank": rank,
            **{key: value for key, value in zip(data.swept_keys, group.values)},
            "best_val_acc": val_acc, "best_val_acc_std": val_acc_std,
            "test_acc": test_acc, "test_acc_std": test_acc_std,
            "best_val_loss": group.stat("best_val_loss")[0],
            "best_epoch": group.stat("best_epoch")[0],
            "seeds": len(group.members),
            "outcome": "/".join(outcomes),
            "config_diff": config_diff(group.members[0], defaults),
            "run_ids": " ".join(m.run_id for m in group.members),
        })
    return rows


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["rank"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: list[dict], swept: list) -> str:
    columns = ["rank", *swept, "best_val_acc", "test_acc", "seeds", "outcome", "config_diff", "run_ids"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            if column in swept:
                cells.append(value_label(row[column]))
            elif column in ("best_val_acc", "test_acc") and row["seeds"] > 1 and not math.isnan(row[column]):
                cells.append(f"{row[column]:.4f} ± {row[column + '_std']:.4f}")
            else:
                cells.append(_cell(row[column]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reproduce_command(member: Member) -> str:
    overrides = [o for o in member.overrides.split() if not o.startswith(SWEEP_OVERRIDE_PREFIXES)]
    return " ".join(["python -m src.run", *overrides])


# --- building -----------------------------------------------------------------------------------------


def build_report(client, sweep_id: str, out_dir: Optional[Path] = None, print_best: bool = False) -> SweepData:
    """Build the comparison, log it under `report/` on the parent run, optionally also write it to out_dir."""
    from src import plots, tracking

    data = load_sweep(client, sweep_id)
    rows = leaderboard_rows(data, default_params())
    parent = tracking.RunRecorder(client, data.parent_run_id)
    files = {"report/leaderboard.csv": to_csv(rows), "report/leaderboard.md": to_markdown(rows, data.swept_keys)}
    for name, text in files.items():
        parent.log_text(text, name)
    figures = {"report/curves.png": plots.sweep_curves(data, f"sweep {sweep_id}: validation curves")}
    if data.swept_keys:
        figures["report/heatmap.png"] = plots.sweep_heatmap(data, f"sweep {sweep_id}: best validation accuracy")
    for name, figure in figures.items():
        parent.log_figure(figure, name)
        if out_dir is not None:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(out_dir / name, dpi=110)
        plots.plt.close(figure)
    if out_dir is not None:
        for name, text in files.items():
            (out_dir / name).write_text(text)
    if print_best:
        print_winner(data, rows)
    return data


def print_winner(data: SweepData, rows: list[dict]) -> None:
    best = ranked(data.groups)[0] if data.groups else None
    if best is None or math.isnan(best.stat("best_val_acc")[0]):
        print(f"[sweep {data.sweep_id}] no config finished; nothing to rank", flush=True)
        return
    row = rows[0]
    spread = f" ± {row['best_val_acc_std']:.4f}" if row["seeds"] > 1 else ""
    setting = " ".join(f"{k}={value_label(v)}" for k, v in zip(data.swept_keys, best.values)) or best.members[0].name
    print(
        f"[sweep {data.sweep_id}] best config: {setting}: best val_acc {row['best_val_acc']:.4f}{spread}, "
        f"test_acc {row['test_acc']:.4f} ({row['seeds']} run(s))",
        flush=True,
    )
    winner = max((m for m in best.members if m.outcome == "finished"), key=lambda m: m.best_val_acc)
    print(f"[sweep {data.sweep_id}] reproduce it: {reproduce_command(winner)}", flush=True)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_id", help="the sweep's id, as printed by the sweep and tagged on its runs")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    parser.add_argument("--out", type=Path, help="also write the report's files to this folder")
    args = parser.parse_args(argv)
    from src import tracking

    client = tracking.get_client(tracking.resolve_tracking_uri(args.tracking_uri))
    try:
        data = build_report(client, args.sweep_id, out_dir=args.out, print_best=True)
    except LookupError as exc:
        print(f"netsweep: {exc}", file=sys.stderr)
        return 2
    print(f"[sweep {data.sweep_id}] report logged on parent run {data.parent_run_id} under report/"
          + (f" and written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
