"""The MLflow side of tracking: a `Store` (one tracking URI) and a `RunLog` (one run being written).

Every call is retried while the store is busy (src/tracking/retry.py). Outcomes map to MLflow statuses
here, and searches are written in MLflow's filter syntax here, so neither leaves the package.
"""

import functools
import io
import json
import logging
import os
import socket
import sqlite3
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars on netsweep's console

import mlflow.store  # noqa: E402
import numpy as np  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from src.errors import ConfigError  # noqa: E402
from src.outcomes import RESULTS, Outcome  # noqa: E402
from src.tracking import models, names  # noqa: E402
from src.tracking.models import quoted  # noqa: E402
from src.tracking.retry import exclusive, schema_version, wait_for_migrations, with_retries  # noqa: E402
from src.tracking.store import SQLITE_PREFIX, RunRecord, result_per_config  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep schema-migration chatter off the console
logging.getLogger("alembic").setLevel(logging.WARNING)

STATUS = {  # the MLflow status each outcome is shown with
    Outcome.SCHEDULED: "SCHEDULED",
    Outcome.RUNNING: "RUNNING",
    Outcome.FINISHED: "FINISHED",
    Outcome.DIVERGED: "FAILED",
    Outcome.PRUNED: "FINISHED",  # a result, not a failure: the run is whole up to where it stopped
    Outcome.ERROR: "FAILED",
    Outcome.KILLED: "KILLED",
}
PHASE = {
    "SCHEDULED": Outcome.SCHEDULED,
    "RUNNING": Outcome.RUNNING,
    "FINISHED": Outcome.FINISHED,
    "FAILED": Outcome.ERROR,
    "KILLED": Outcome.KILLED,
}
OPEN = ("SCHEDULED", "RUNNING")
NOTE = "mlflow.note.content"  # the description the UI shows on an experiment
BATCH_LIMIT = 100  # MLflow accepts at most 100 params (and 1000 metrics) per log_batch call
PAGE = 1000
REACH_TIMEOUT_S = 10.0  # a tracking server that accepts no connection within this is reported unreachable


class _RetryingClient:
    """An MlflowClient whose every call is retried while the store is busy."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str):
        value = getattr(self._client, name)
        return with_retries(value) if callable(value) else value


def _phase(run) -> Outcome:
    """How a run stands: open runs by their status, ended ones by their outcome tag."""
    status = run.info.status
    if status in OPEN:
        return PHASE[status]
    tagged = run.data.tags.get(names.OUTCOME)
    return Outcome(tagged) if tagged in Outcome._value2member_map_ and Outcome(tagged).ended else PHASE[status]


def _record(run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        outcome=_phase(run),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        parent_run_id=tags.get("mlflow.parentRunId"),
        start_time_ms=run.info.start_time or 0,
    )


@functools.lru_cache(maxsize=1)
def _latest_schema() -> str | None:
    """The schema revision this MLflow migrates stores to (its Alembic scripts' head), if it can be read."""
    try:
        return ScriptDirectory(str(Path(mlflow.store.__file__).parent / "db_migrations")).get_current_head()
    except Exception:  # another layout: fall back on waiting for the schema to stop changing
        return None


def _install_fresh_store(db: Path) -> None:
    """Create and migrate a new store in a private file, then put it in place atomically (unless another
    process created one meanwhile): an `mlflow ui` opening the same path at that moment either sees no
    store (and makes its own, which this one then waits for) or a complete one, never half a migration."""
    staging = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        MlflowClient(tracking_uri=SQLITE_PREFIX + str(staging)).search_experiments(max_results=1)
        os.link(staging, db)
    except FileExistsError:
        pass  # another process created the store first: Store waits for its migration to settle
    finally:
        staging.unlink(missing_ok=True)


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


class Store:
    """One tracking store. MLflow creates or migrates a SQLite store on first use, which happens here."""

    def __init__(self, uri: str):
        self.uri = uri
        if uri.startswith(("http://", "https://")):
            _check_reachable(uri)
        self._client = (
            self._open_sqlite(Path(uri[len(SQLITE_PREFIX) :]))
            if uri.startswith(SQLITE_PREFIX)
            else (_RetryingClient(MlflowClient(tracking_uri=uri)))
        )
        self._client.search_experiments(max_results=1)  # a server: is it there? SQLite: the store is ready

    @staticmethod
    def _open_sqlite(db: Path) -> "_RetryingClient":
        """A client of a SQLite store, created if missing; one netsweep process at a time, never while another
        process is migrating it, and never migrating one in place that another process can see (MLflow
        opens, creates and migrates the store as the client is made)."""
        with exclusive(db.with_name(db.name + ".lock")):
            if not db.exists():
                _install_fresh_store(db)
            for attempt in range(3):
                wait_for_migrations(db, _latest_schema())
                version = schema_version(db)
                try:
                    return _RetryingClient(MlflowClient(tracking_uri=SQLITE_PREFIX + str(db)))
                except MlflowException as exc:  # an out-of-date schema, unless someone was still migrating it
                    if "out-of-date database schema" not in str(exc) or schema_version(db) == version:
                        raise
            return _RetryingClient(MlflowClient(tracking_uri=SQLITE_PREFIX + str(db)))

    # --- experiments ------------------------------------------------------------------------------

    def experiment_id(self, name: str, description: str = "") -> str:
        """The id of experiment `name`, created if missing (tolerating another process creating it first);
        `description` becomes its note in the UI unless it has one."""
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self._client.restore_experiment(experiment.experiment_id)
        else:
            try:
                self._client.create_experiment(name)
            except MlflowException:
                pass  # another process created it first
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

    def create_run(
        self, experiment_id: str, name: str, tags: dict, parent_run_id: str | None = None, scheduled: bool = False
    ) -> "RunLog":
        """A new run, RUNNING (or SCHEDULED: created for a worker that has not started yet)."""
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self._client.create_run(experiment_id, run_name=name, tags=tags)
        if scheduled:
            self._client.update_run(run.info.run_id, status=STATUS[Outcome.SCHEDULED])
        return RunLog(self._client, run.info.run_id)

    def attach_run(self, run_id: str, tags: dict) -> "RunLog":
        """Take over a run created elsewhere (a sweep's parent creates its children): it is RUNNING now."""
        self._client.update_run(run_id, status=STATUS[Outcome.RUNNING])
        log = RunLog(self._client, run_id)
        log.set_tags({names.OUTCOME: Outcome.RUNNING.value, **tags})
        return log

    def run_log(self, run_id: str) -> "RunLog":
        """Write to an existing run without changing how it stands."""
        return RunLog(self._client, run_id)

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
        outcomes = [Outcome(o).value for o in outcomes]
        if len(outcomes) > 1:  # MLflow's filter has no IN for tags: one search per outcome
            return [
                run
                for outcome in outcomes
                for run in self.runs(
                    experiment_ids,
                    sweep_id=sweep_id,
                    sweeps_only=sweeps_only,
                    config_hash=config_hash,
                    outcomes=[outcome],
                )
            ]
        clauses = []
        if sweep_id:
            clauses.append(f"tags.{names.SWEEP_ID} = {quoted(sweep_id)}")
        if sweeps_only:
            clauses.append(f"tags.`{names.ROLE}` = {quoted(names.ROLE_SWEEP)}")
        if config_hash:
            clauses.append(f"tags.{names.CONFIG_HASH} = {quoted(config_hash)}")
        if outcomes:
            clauses.append(f"tags.{names.OUTCOME} = {quoted(outcomes[0])}")
        found, token = [], None
        while True:
            page = self._client.search_runs(
                list(experiment_ids), " and ".join(clauses), max_results=PAGE, page_token=token
            )
            found.extend(_record(run) for run in page)
            token = page.token
            if not token:
                return found

    def results_by_config(self, experiment_id: str) -> dict:
        """{config_hash: run} of every run of the experiment that ended with a result (finished preferred)."""
        return result_per_config(self.runs([experiment_id], outcomes=RESULTS))

    def find_sweep(self, sweep_id: str, experiment_id: str | None = None) -> RunRecord | None:
        """The parent run of sweep `sweep_id`, in one experiment or searched across all of them."""
        experiment_ids = (
            [experiment_id] if experiment_id else [e.experiment_id for e in self._client.search_experiments()]
        )
        for chunk_start in range(0, len(experiment_ids), 100):
            found = self.runs(experiment_ids[chunk_start : chunk_start + 100], sweep_id=sweep_id, sweeps_only=True)
            if found:
                return found[0]
        return None

    def history(self, run_id: str, metrics: Iterable[str] = names.EPOCH_METRICS) -> dict:
        """{metric: [value at epoch 1, epoch 2, ...]} as logged so far."""
        curves = {}
        for key in metrics:
            points = sorted(self._client.get_metric_history(run_id, key), key=lambda m: m.step)
            curves[key] = [m.value for m in points]
        return curves

    def epochs_logged(self, run_id: str) -> int:
        return len(self._client.get_metric_history(run_id, "val_acc"))

    def read_json(self, run_id: str, name: str) -> dict:
        """A JSON artifact of a run, or {} when the run has none by that name."""
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self._client.download_artifacts(run_id, name, folder)
            except (MlflowException, OSError):
                return {}
            return json.loads(Path(path).read_text())

    def load_model(self, uri: str):
        """A saved net: `runs:/<id>/model`, `models:/<name>@<alias>`, or a bare run id."""
        return models.load(self, uri if "/" in uri else models.model_uri(uri))

    def register_model(self, name: str, run_id: str, alias: str, tags: dict) -> tuple:
        """(version, moved): the run's model under `name`, `alias` pointing at it (moved only if it changed)."""
        return models.register(self, name, run_id, alias, tags)

    def evaluate_model(self, run_id: str, images: np.ndarray, labels: np.ndarray) -> dict:
        """mlflow.models.evaluate on the run's model: per-class metrics and a confusion matrix on the run."""
        return models.evaluate(self, run_id, images, labels)

    def artifacts(self, run_id: str, folder: str = "") -> list[str]:
        """Paths of a run's artifacts (recursively)."""
        found = []
        for item in self._client.list_artifacts(run_id, folder or None):
            found.extend(self.artifacts(run_id, item.path) if item.is_dir else [item.path])
        return found


class RunLog:
    """One MLflow run, written as training goes: params, per-epoch metrics, artifacts, outcome."""

    def __init__(self, client, run_id: str):
        self._client, self.run_id = client, run_id

    def set_tags(self, tags: dict) -> None:
        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def rename(self, name: str) -> None:
        self._client.update_run(self.run_id, name=name)

    def log_params(self, params: dict) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            self._client.log_batch(self.run_id, params=items[start : start + BATCH_LIMIT])

    def log_metrics(self, metrics: dict, step: int = 0, tags: dict | None = None) -> None:
        """Metrics at `step` (and tags, in the same write)."""
        now = int(time.time() * 1000)
        self._client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_text(self, text: str, name: str) -> None:
        self._client.log_text(self.run_id, text, name)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), folder)

    def log_folder(self, folder: Path, name: str) -> None:
        self._client.log_artifacts(self.run_id, str(folder), name)

    def log_inputs(self, datasets: list) -> None:
        self._client.log_inputs(self.run_id, datasets=datasets)

    def log_model(self, params: dict, layout: dict, example: np.ndarray) -> None:
        """The kept weights as the run's MLflow pyfunc model `model/` (src/tracking/models.py)."""
        models.save_model(self, params, layout, example)

    def log_training_data(self, name: str, digest: str, source: str, layout: dict, rows: int, classes: int) -> None:
        """The training data as the run's MLflow dataset input."""
        models.log_dataset(self, name, digest, source, layout, rows, classes)

    def log_arrays(self, arrays: dict, name: str) -> None:
        """Arrays as an .npz artifact (plain arrays only: readable with allow_pickle=False)."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(buffer.getvalue())
            self._client.log_artifact(self.run_id, str(path))

    def reopen(self) -> None:
        """An ended run taking up work again (a resumed sweep's parent)."""
        self._client.update_run(self.run_id, status=STATUS[Outcome.RUNNING])
        self.set_tags({names.OUTCOME: Outcome.RUNNING.value})

    def close(self, outcome: Outcome, reason: str | None = None) -> None:
        """End the run with the status its outcome maps to, tagging `outcome` (and `failure_reason`)."""
        tags = {names.OUTCOME: Outcome(outcome).value}
        if reason:
            tags[names.FAILURE_REASON] = reason[:5000]
        self.set_tags(tags)
        self._client.set_terminated(self.run_id, status=STATUS[Outcome(outcome)])
