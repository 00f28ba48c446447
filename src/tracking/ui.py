"""Where a person looks at what was recorded: the `mlflow ui` command for a local store, the link that opens
an experiment's runs table directly (MLflow 3 opens experiments on a GenAI overview otherwise), and for a
sweep the saved view that link opens: its runs only (the parent first, its configs under it), with the
objective, the accuracy and the swept keys as columns.

MLflow's runs table keeps its columns in the browser, not in the URL; what a URL can carry is a share key,
`viewStateShareKey=<key>`, naming an experiment tag `mlflow.sharedViewState.<key>` that holds the view as
JSON (what the UI's own "Share" button writes). Of the view, MLflow restores the search (filter, sort) and
the table's layout (columns, their order and widths), never which parent runs are expanded. The view is
not sorted: sorted by a metric, MLflow lists every run flat, the parent among its children.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from src.tracking.opening import is_local_file

RUNS_TABLE = "#/experiments/{experiment_id}/runs?workflowType=machine_learning"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow's experiment tag for a shared view of the runs table
SHOWN_METRICS = ("best_val_acc", "test_acc")  # beside the objective
SHOWN_TAGS = ("outcome",)
NAME_WIDTH = 340  # pixels of the Run Name column: a sweep's name says its data, keys and configs


@dataclass(frozen=True)
class TableView:
    """The runs table as a sweep's link opens it."""

    sweep_id: str
    objective: str  # the metric ranked by: its column first
    swept_keys: list[str] = field(default_factory=list)


def view_key(sweep_id: str) -> str:
    return f"netsweep-{sweep_id}"


def view_tag(sweep_id: str) -> str:
    """The experiment tag that holds the saved view of sweep `sweep_id`."""
    return VIEW_TAG_PREFIX + view_key(sweep_id)


def _column(group: str, key: str) -> str:
    return f"{group}.`{key}`"  # how MLflow's UI names a column: metrics.`best_val_ce`


def view_state(view: TableView) -> str:
    """The saved view as MLflow's UI reads it (JSON): the sweep's runs, best first, and the columns that
    say how each did."""
    metrics = [view.objective, *[m for m in SHOWN_METRICS if m != view.objective]]
    columns = (
        [_column("metrics", m) for m in metrics]
        + [_column("params", k) for k in view.swept_keys]
        + [_column("tags", t) for t in SHOWN_TAGS]
    )
    name = _column("attributes", "Run Name")
    state = {
        "searchFilter": f"tags.sweep_id = '{view.sweep_id}'",
        "selectedColumns": columns,
        "columnOrder": [name, *columns],  # the objective first; MLflow would sort the metrics by name
        "columnWidths": {name: NAME_WIDTH},  # applied to the columns in columnOrder only
    }
    return json.dumps(state)


def ui_base(uri: str, port: int) -> str:
    """The address of the UI: the tracking server itself, or the `mlflow ui` a local store needs."""
    return f"http://127.0.0.1:{port}" if is_local_file(uri) else uri.rstrip("/")


def ui_command(uri: str, port: int) -> str:
    """What to run to browse `uri` (nothing to run for a tracking server: it serves its own UI)."""
    return f"mlflow ui --backend-store-uri {uri} --port {port}" if is_local_file(uri) else ""


def runs_table_url(uri: str, experiment_id: str, port: int, sweep_id: str | None = None) -> str:
    """The runs table of the experiment; for a sweep, in the saved view its report wrote (see `view_state`)."""
    link = f"{ui_base(uri, port)}/{RUNS_TABLE.format(experiment_id=experiment_id)}"
    return f"{link}&viewStateShareKey={view_key(sweep_id)}" if sweep_id else link


def browse_lines(uri: str, experiment_id: str, port: int, sweep_id: str | None = None) -> list[str]:
    """One line with the command (local stores), one with the link."""
    command = ui_command(uri, port)
    link = runs_table_url(uri, experiment_id, port, sweep_id)
    return ([f"browse: {command}"] if command else []) + [f"runs table: {link}"]
