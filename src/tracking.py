"""Everything written to MLflow goes through here: the only module that imports mlflow.

Importing mlflow costs about a second, so callers import this module only when they are about to
record something.
"""

import functools
import io
import json
import logging
import os
import random
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from src.interrupts import shielded

OUTCOME_STATUS = {
    "finished": RunStatus.to_string(RunStatus.FINISHED),
    "diverged": RunStatus.to_string(RunStatus.FAILED),
    "error": RunStatus.to_string(RunStatus.FAILED),
    "killed": RunStatus.to_string(RunStatus.KILLED),
}
logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep schema-migration chatter off the console
logging.getLogger("alembic").setLevel(logging.WARNING)
BATCH_LIMIT = 100  # MLflow accepts at most 100 params (and 1000 metrics) per log_batch call
CODE_DIR = Path(__file__).resolve().parents[1]


def resolve_tracking_uri(configured: Optional[str]) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else MLflow's default sqlite:///mlflow.db here.

    A relative SQLite path is made absolute so that workers in other directories write to the same store.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


# A SQLite store locked by another writer, or migrated by another process at the same moment (a fresh
# mlflow.db opened by `mlflow ui` and a sweep at once): both pass once the other process is done.
TRANSIENT = (
    "database is locked",
    "database table is locked",
    "Online migration expected to match one row",
    "duplicate column name",
)
TRANSIENT_PATTERN = re.compile("|".join(map(re.escape, TRANSIENT)) + r"|table \w+ already exists")
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0)  # ~31 s on top of SQLite's own wait


def with_retries(call):
    """`call`, retried with backoff while a SQLite store is locked or being migrated by another process.

    MLflow already asks SQLite to wait 20 s for a lock; under many concurrent workers that can still
    run out, and losing a run's metrics to it would be worse than waiting a little longer.
    """

    @functools.wraps(call)
    def retrying(*args, **kwargs):
        with shielded():  # Ctrl-C waits for the write to finish rather than breaking its transaction
            for delay in RETRY_DELAYS_S:
                try:
                    return call(*args, **kwargs)
                except Exception as exc:  # MlflowException or SQLAlchemy's OperationalError, by call
                    if not TRANSIENT_PATTERN.search(str(exc)):
                        raise
                    time.sleep(delay * (1 + random.random()))
            return call(*args, **kwargs)

    return retrying


class RetryingClient:
    """An MlflowClient whose every call is retried while the store is locked (see `with_retries`)."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str):
        value = getattr(self._client, name)
        return with_retries(value) if callable(value) else value


def get_client(uri: str) -> RetryingClient:
    """A client for `uri`. MLflow creates or migrates a SQLite store on first use, so that is retried too."""
    client = RetryingClient(MlflowClient(tracking_uri=uri))
    client.search_experiments(max_results=1)  # opens (and on a fresh file, creates) the store now
    return client


def prefer_wal(uri: str) -> None:
    """Switch a local SQLite store to write-ahead logging, so readers (progress, the UI) never block the
    writers of a sweep. The mode is stored in the file; other stores are left alone."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    with sqlite3.connect(uri[len(prefix) :], timeout=30) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def ensure_experiment(client, name: str) -> str:
    """The id of experiment `name`, created if missing (tolerating another process creating it first)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def search_all(client, experiment_id: str, filter_string: str = "") -> list:
    """Every run of the experiment matching `filter_string`, across result pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def read_json(client, run_id: str, name: str) -> dict:
    """A JSON artifact of a run, or {} when the run has none by that name."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, name, folder)
        except (MlflowException, OSError):
            return {}
        return json.loads(Path(path).read_text())


def _git(*args: str) -> Optional[str]:
    try:
        result = subprocess.run(
            ["git", *args], cwd=CODE_DIR, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_tags() -> dict:
    """The commit of the code that trains (when it sits in a git checkout) and whether it had local edits."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {}
    return {"mlflow.source.git.commit": commit, "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


class RunRecorder:
    """One MLflow run, written as training goes: params, per-epoch metrics, artifacts, outcome."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    @classmethod
    def create(cls, client, experiment_id: str, run_name: str, tags: dict) -> "RunRecorder":
        run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        return cls(client, run.info.run_id)

    @classmethod
    def attach(cls, client, run_id: str, tags: dict) -> "RunRecorder":
        """Take over a run created elsewhere (a sweep's parent process creates its children)."""
        recorder = cls(client, run_id)
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        recorder.set_tags(tags)
        return recorder

    @property
    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: dict) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH_LIMIT])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_file(self, path: Path, folder: Optional[str] = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def log_arrays(self, arrays: dict, name: str) -> None:
        """Arrays as an .npz artifact (plain arrays only: readable with allow_pickle=False)."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(buffer.getvalue())
            self.client.log_artifact(self.run_id, str(path))

    def end(self, outcome: str, reason: Optional[str] = None) -> None:
        """Close the run with the status its outcome maps to, tagging `outcome` (and `failure_reason`)."""
        tags = {"outcome": outcome}
        if reason:
            tags["failure_reason"] = reason[:5000]
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status=OUTCOME_STATUS[outcome])
