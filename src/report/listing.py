"""The sweeps a store holds, one line each, for `python -m src.report` without a sweep id."""

from __future__ import annotations

import datetime

from src.tracking import names
from src.tracking.api import RunRecord, Store

COLUMNS = ("sweep", "started", "data", "configs", "outcome", "winner")


def _data_of(parent: RunRecord) -> str:
    """The data the sweep trained on: its parent's param (written by the report), else the command line's
    `data=` choice, else the default."""
    if "data.name" in parent.params:
        return parent.params["data.name"]
    chosen = [o.split("=", 1)[1] for o in parent.tags.get(names.SWEEP_OVERRIDES, "").split() if o.startswith("data=")]
    return chosen[-1] if chosen else "digits"


def _winner_of(parent: RunRecord) -> str:
    config = parent.tags.get("winner.config")
    if not config:
        return "(no report yet)"
    score = parent.tags.get("winner.objective") or (
        f"best_val_acc={parent.tags['winner.val_acc']}" if "winner.val_acc" in parent.tags else ""
    )
    return f"{config} ({score})" if score else config


def _count(parent: RunRecord) -> str:
    """'16 x 5 seeds' from what the report logged (configs, and seeds as the parent's param), else the runs
    the sweep counted when it closed."""
    configs = parent.metrics.get("n_configs")
    if configs is None:
        return parent.tags.get("n_configs", "?")
    seeds = parent.params.get("seed", "")
    return f"{int(configs)}" + (f" x {seeds}" if seeds.endswith("seeds") else "")


def row(parent: RunRecord) -> dict[str, str]:
    started = datetime.datetime.fromtimestamp(parent.start_time_ms / 1000) if parent.start_time_ms else None
    return {
        "sweep": parent.tags.get(names.SWEEP_ID, parent.run_id),
        "started": started.strftime("%Y-%m-%d %H:%M") if started else "-",
        "data": _data_of(parent),
        "configs": _count(parent),
        "outcome": parent.outcome.value,
        "winner": _winner_of(parent),
    }


def lines(store: Store) -> list[str]:
    """A table of the store's sweeps, newest first, with a line saying how to report one."""
    rows = [row(parent) for parent in store.sweeps()]
    if not rows:
        return [f"no sweeps in {store.uri}: run one with python -m src.run -m ..."]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS[:-1]}
    text = ["  ".join(c.ljust(widths[c]) for c in COLUMNS[:-1]) + "  winner"]
    text += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS[:-1]) + "  " + r["winner"] for r in rows]
    return [*text, f"{len(rows)} sweep(s) in {store.uri}; report one with: python -m src.report <sweep>"]
