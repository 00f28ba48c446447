"""The MLflow implementation of the tracking seam (src/tracking/api.py): `MlflowStore` (one tracking URI)
and `MlflowRunLog` (one run being written).

Every call goes through `TrackingClient` (src/tracking/mlflow_client.py), retried while the store is busy.
Outcomes map to MLflow statuses here, and searches are written in MLflow's filter syntax here, so neither
leaves the package.
"""

import contextlib
import io
import json
import socket
import sqlite3
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from src.errors import ConfigError
from src.interrupts import shielded
from src.outcomes import RESULTS, Outcome
from src.tracking import mlflow_models, names
from src.tracking.api import DatasetRecord, Registration, RunRecord, StepMetrics, Store, Tags, result_per_config
from src.tracking.mlflow_client import TrackingClient
from src.tracking.mlflow_models import LoadedNet, quoted
from src.tracking.opening import SQLITE_PREFIX
from src.tracking.sqlite_files import open_sqlite

STATUS = {  # the MLflow status each outcome is shown with
    Outcome.SCHEDULED: "SCHEDULED",
    Outcome.RUNNING: "RUNNING",
    Outcome.FINISHED: "FINISHED",
    Outcome.DIVERGED: "FAILED",
    Outcome.PRUNED: "FINISHED",  # a result, not a failure: the run is whole up to where it stopped
    Outcome.ERROR: "FAILED",
    Outcome.KILLED: "KILLED",
    Outcome.PAUSED: "SCHEDULED",  # waiting for a worker again, once its rung is decided
}
PHASE = {
    "SCHEDULED": Outcome.SCHEDULED,
    "RUNNING": Outcome.RUNNING,
    "FINISHED": Outcome.FINISHED,
    "FAILED": Outcome.ERROR,
    "KILLED": Outcome.KILLED,
}
OPEN = ("SCHEDULED", "RUNNING")
ENDED = {outcome.value for outcome in Outcome if outcome.ended}
NOTE = "mlflow.note.content"  # the description the UI shows on an experiment
PARENT = "mlflow.parentRunId"
BATCH_LIMIT = 100  # MLflow accepts at most 100 params (and 1000 metrics) per log_batch call
METRICS_PER_BATCH = 900  # what one log_batch of several steps carries (MLflow: at most 1000 items in all)
PAGE = 1000
EXPERIMENTS_PER_SEARCH = 100
REACH_TIMEOUT_S = 10.0  # a tracking server that accepts no connection within this is reported unreachable


def _phase(run: Run) -> Outcome:
    """How a run stands: open runs by their status, ended ones by their outcome tag."""
    status = run.info.status
    if status in OPEN:
        return PHASE[status]
    tagged = run.data.tags.get(names.OUTCOME)
    return Outcome(tagged) if tagged in ENDED else PHASE[status]


def _record(run: Run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        outcome=_phase(run),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        parent_run_id=tags.get(PARENT),
        start_time_ms=run.info.start_time or 0,
    )


def _check_reachable(uri: str) -> None:
    """A tracking server nothing answers at is reported at once (MLflow would retry for minutes)."""
    parsed = urlparse(uri)
    if urllib.request.getproxies().get(parsed.scheme) and not urllib.request.proxy_bypass(parsed.hostname or ""):
        return  # reached through a proxy, as MLflow's requests will: only they can tell
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the tracking server {uri} ({exc.strerror or exc}): start it, or point "
            "tracking.uri or MLFLOW_TRACKING_URI at one that runs"
        ) from None


def _filter(sweep_id: str | None, sweeps_only: bool, config_hash: str | None, outcome: str | None) -> str:
    """A search filter in MLflow's syntax for runs matching every criterion given."""
    clauses = []
    if sweep_id:
        clauses.append(f"tags.{names.SWEEP_ID} = {quoted(sweep_id)}")
    if sweeps_only:
        clauses.append(f"tags.`{names.ROLE}` = {quoted(names.ROLE_SWEEP)}")
    if config_hash:
        clauses.append(f"tags.{names.CONFIG_HASH} = {quoted(config_hash)}")
    if outcome:
        clauses.append(f"tags.{names.OUTCOME} = {quoted(outcome)}")
    return " and ".join(clauses)


class MlflowRunLog:
    """One MLflow run, written as training goes: params, per-epoch metrics, artifacts, outcome."""

    run_id: str

    def __init__(self, client: TrackingClient, run_id: str):
        self._client, self.run_id = client, run_id

    def set_tags(self, tags: Tags) -> None:
        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def rename(self, name: str) -> None:
        self._client.update_run(self.run_id, name=name)

    def log_params(self, params: Tags) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            self._client.log_batch(self.run_id, params=items[start : start + BATCH_LIMIT])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, tags: Tags | None = None) -> None:
        """Metrics at `step`, now (and tags, in the same write)."""
        self.log_steps([StepMetrics(step, metrics, int(time.time() * 1000))], tags)

    def log_steps(self, steps: Sequence[StepMetrics], tags: Tags | None = None) -> None:
        """Several steps' metrics with their own timestamps, in batches of whole steps (a step is never half
        written), the tags with the last; Ctrl-C waits for the last batch (`interrupts.shielded`)."""
        written = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        batches: list[list[Metric]] = []
        for at in steps:
            metrics = [Metric(k, float(v), at.time_ms, at.step) for k, v in at.metrics.items()]
            if not batches or len(batches[-1]) + len(metrics) > METRICS_PER_BATCH:
                batches.append([])
            batches[-1].extend(metrics)
        if not batches and not written:
            return
        batches = batches or [[]]
        with shielded():
            for index, batch in enumerate(batches):
                self._client.log_batch(self.run_id, metrics=batch, tags=written if index == len(batches) - 1 else [])

    def log_text(self, text: str, name: str) -> None:
        self._client.log_text(self.run_id, text, name)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), folder)

    def log_arrays(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        """Arrays as an .npz artifact (plain arrays only: readable with allow_pickle=False)."""
        buffer = io.BytesIO()
        named: dict[str, Any] = dict(arrays)  # names as the .npz keys (none is savez's own allow_pickle)
        np.savez(buffer, **named)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(buffer.getvalue())
            self._client.log_artifact(self.run_id, str(path))

    def log_model(self, params: Mapping[str, np.ndarray], layout: Mapping[str, Any], example: np.ndarray) -> None:
        """The kept weights as the run's MLflow pyfunc model `model/` (src/tracking/mlflow_models.py)."""
        mlflow_models.save_model(self._client, self.run_id, params, layout, example)

    def log_training_data(self, data: DatasetRecord) -> None:
        """The training data as the run's MLflow dataset input."""
        mlflow_models.log_dataset(self._client, self.run_id, data)

    def reopen(self) -> None:
        """An ended run taking up work again (a resumed sweep's parent)."""
        self._client.update_run(self.run_id, status=STATUS[Outcome.RUNNING])
        self.set_tags({names.OUTCOME: Outcome.RUNNING.value})

    def reschedule(self) -> None:
        """A run waiting again for a worker, which continues it from its checkpoint."""
        self._client.update_run(self.run_id, status=STATUS[Outcome.SCHEDULED])
        self.set_tags({names.OUTCOME: Outcome.SCHEDULED.value})

    def close(self, outcome: Outcome, reason: str | None = None) -> None:
        """End the run with the status its outcome maps to, tagging `outcome` (and `failure_reason`)."""
        tags = {names.OUTCOME: Outcome(outcome).value}
        if reason:
            tags[names.FAILURE_REASON] = reason[:5000]
        self.set_tags(tags)
        self._client.set_terminated(self.run_id, status=STATUS[Outcome(outcome)])


class MlflowStore:
    """One tracking store. MLflow creates or migrates a SQLite store on first use, which happens here
    (src/tracking/sqlite_files.py)."""

    uri: str

    def __init__(self, uri: str):
        self.uri = uri
        if uri.startswith(("http://", "https://")):
            _check_reachable(uri)
        self._client = (
            open_sqlite(Path(uri[len(SQLITE_PREFIX) :])) if uri.startswith(SQLITE_PREFIX) else TrackingClient(uri)
        )
        self._client.search_experiments(max_results=1)  # a server: is it there? SQLite: the store is ready

    # --- experiments ------------------------------------------------------------------------------

    def experiment_id(self, name: str, description: str = "") -> str:
        """The id of experiment `name`, created if missing (tolerating another process creating it first);
        `description` becomes its note in the UI unless it has one."""
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self._client.restore_experiment(experiment.experiment_id)
        else:
            with contextlib.suppress(MlflowException):  # another process created it first
                self._client.create_experiment(name)
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                raise MlflowException(f"experiment {name!r} could not be created")
        if description and NOTE not in experiment.tags:
            self._client.set_experiment_tag(experiment.experiment_id, NOTE, description)
        return experiment.experiment_id

    def prefer_wal(self) -> None:
        """Switch a local SQLite store to write-ahead logging, so readers (progress, the UI) never block the
        writers of a sweep. The mode is stored in the file; other stores are left alone."""
        if self.uri.startswith(SQLITE_PREFIX):
            with sqlite3.connect(self.uri[len(SQLITE_PREFIX) :], timeout=30) as connection:
                connection.execute("PRAGMA journal_mode=WAL")

    # --- writing ------------------------------------------------------------------------------------

    def set_experiment_tags(self, experiment_id: str, tags: Tags) -> None:
        """Tags on the experiment (not on a run): what its UI reads, e.g. a saved view of the runs table."""
        for key, value in tags.items():
            self._client.set_experiment_tag(experiment_id, key, str(value))

    def create_run(
        self,
        experiment_id: str,
        name: str,
        tags: Tags,
        parent_run_id: str | None = None,
        scheduled: bool = False,
    ) -> MlflowRunLog:
        """A new run, RUNNING (or SCHEDULED: created for a worker that has not started yet)."""
        written = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            written[PARENT] = parent_run_id
        run = self._client.create_run(experiment_id, run_name=name, tags=written)
        if scheduled:
            self._client.update_run(run.info.run_id, status=STATUS[Outcome.SCHEDULED])
        return MlflowRunLog(self._client, run.info.run_id)

    def create_run_in(self, experiment: str, description: str, name: str, tags: Tags) -> MlflowRunLog:
        """A new RUNNING run in the experiment named `experiment` (created, with `description`, if missing)."""
        return self.create_run(self.experiment_id(experiment, description), name, tags)

    def attach_run(self, run_id: str, tags: Tags) -> MlflowRunLog:
        """Take over a run created elsewhere (a sweep's parent creates its children): it is RUNNING now."""
        self._client.update_run(run_id, status=STATUS[Outcome.RUNNING])
        log = MlflowRunLog(self._client, run_id)
        log.set_tags({names.OUTCOME: Outcome.RUNNING.value, **tags})
        if names.FAILURE_REASON in self._client.get_run(run_id).data.tags:  # an attempt that was killed
            self._client.delete_tag(run_id, names.FAILURE_REASON)
        return log

    def run_log(self, run_id: str) -> MlflowRunLog:
        """Write to an existing run without changing how it stands."""
        return MlflowRunLog(self._client, run_id)

    # --- reading --------------------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord:
        return _record(self._client.get_run(run_id))

    def phase(self, run_id: str) -> Outcome:
        return _phase(self._client.get_run(run_id))

    def runs(
        self,
        experiment_ids: Iterable[str],
        *,
        sweep_id: str | None = None,
        sweeps_only: bool = False,
        config_hash: str | None = None,
        outcomes: Iterable[Outcome] = (),
    ) -> list[RunRecord]:
        """Runs of the experiments matching every criterion given (any of `outcomes`), across result pages."""
        experiments = list(experiment_ids)
        wanted: list[str | None] = [Outcome(o).value for o in outcomes] or [
            None
        ]  # MLflow's filter has no IN for tags: one each
        found: list[RunRecord] = []
        for outcome in wanted:
            filter_string, token = _filter(sweep_id, sweeps_only, config_hash, outcome), None
            while True:
                page = self._client.search_runs(experiments, filter_string, max_results=PAGE, page_token=token)
                found.extend(_record(run) for run in page)
                token = page.token
                if not token:
                    break
        return found

    def results_by_config(self, experiment_id: str) -> dict[str, RunRecord]:
        """{config_hash: run} of every run of the experiment that ended with a result (finished preferred)."""
        return result_per_config(self.runs([experiment_id], outcomes=RESULTS))

    def find_sweep(self, sweep_id: str, experiment_id: str | None = None) -> RunRecord | None:
        """The parent run of sweep `sweep_id`, in one experiment or searched across all of them."""
        experiment_ids = (
            [experiment_id] if experiment_id else [e.experiment_id for e in self._client.search_experiments()]
        )
        for start in range(0, len(experiment_ids), EXPERIMENTS_PER_SEARCH):
            chunk = experiment_ids[start : start + EXPERIMENTS_PER_SEARCH]
            found = self.runs(chunk, sweep_id=sweep_id, sweeps_only=True)
            if found:
                return found[0]
        return None

    def sweeps(self) -> list[RunRecord]:
        """The parent runs of every sweep in the store (any experiment), newest first."""
        experiment_ids = [e.experiment_id for e in self._client.search_experiments()]
        found: list[RunRecord] = []
        for start in range(0, len(experiment_ids), EXPERIMENTS_PER_SEARCH):
            found.extend(self.runs(experiment_ids[start : start + EXPERIMENTS_PER_SEARCH], sweeps_only=True))
        return sorted(found, key=lambda run: run.start_time_ms, reverse=True)

    def history(self, run_id: str, metrics: Iterable[str] = names.EPOCH_METRICS) -> dict[str, list[float]]:
        """{metric: [value at epoch 1, epoch 2, ...]} as logged so far."""
        curves = {}
        for key in metrics:
            points = sorted(self._client.get_metric_history(run_id, key), key=lambda m: m.step)
            curves[key] = [m.value for m in points]
        return curves

    def epochs_logged(self, run_id: str) -> int:
        return len(self._client.get_metric_history(run_id, "val_acc"))

    def read_json(self, run_id: str, name: str) -> dict[str, Any]:
        """A JSON artifact of a run, or {} when the run has none by that name."""
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self._client.download_artifacts(run_id, name, folder)
            except (MlflowException, OSError):
                return {}
            read: dict[str, Any] = json.loads(Path(path).read_text())
            return read

    def artifacts(self, run_id: str, folder: str = "") -> list[str]:
        """Paths of a run's artifacts (recursively)."""
        found = []
        for item in self._client.list_artifacts(run_id, folder or None):
            found.extend(self.artifacts(run_id, item.path) if item.is_dir else [item.path])
        return found

    # --- models -------------------------------------------------------------------------------------

    def load_model(self, uri: str) -> LoadedNet:
        """A saved net: `runs:/<id>/model`, `models:/<name>@<alias>`, a path, or a bare run id."""
        return mlflow_models.load(self._client, uri if "/" in uri else mlflow_models.model_uri(uri))

    def register_model(self, name: str, run_id: str, alias: str, tags: Tags) -> Registration:
        """The run's model under `name`, `alias` pointing at it (moved only if it changed)."""
        return mlflow_models.register(self._client, name, run_id, alias, tags)

    def evaluate_model(
        self, run_id: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = ()
    ) -> dict[str, float]:
        """mlflow.models.evaluate on the run's model: per-class metrics and a confusion matrix on the run,
        which keeps the status and end time it had."""
        return mlflow_models.evaluate(self._client, run_id, images, labels, classes)


def connect(uri: str) -> Store:
    """The store at `uri` (what `open_store` calls, once per URI and process)."""
    return MlflowStore(uri)


def warm_up() -> None:
    """Start the work a process that saves models does once, beside what it does next (src/tracking/opening.py's
    `preload`): MLflow's check of the model's requirements (src/tracking/mlflow_models.py)."""
    mlflow_models.warm_up()
