"""The MLflow calls netsweep makes, and nothing else: one method per `MlflowClient` method it uses, each
retried while the store is busy and holding back Ctrl-C until it is done (src/tracking/retry.py).

Whoever wants to know what netsweep depends on in MLflow's client reads this class; a call it lacks is a
call netsweep does not make. (One method, `download_artifact_uri`, wraps the download MLflow offers only
outside its client, for model URIs the client cannot resolve itself.)
"""

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, Experiment, FileInfo, Metric, Param, Run, RunTag
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.store.entities import PagedList

from src.tracking.retry import with_retries

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars (read as MLflow downloads)
logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep schema-migration chatter off the console
logging.getLogger("alembic").setLevel(logging.WARNING)


class TrackingClient:
    """An MlflowClient of one tracking URI, reduced to the calls netsweep makes."""

    def __init__(self, uri: str):
        """Connect to `uri`; MLflow creates (or migrates) a SQLite store as it connects."""
        self.uri = uri
        self._mlflow = MlflowClient(tracking_uri=uri)

    # --- experiments ------------------------------------------------------------------------------

    @with_retries
    def search_experiments(self, max_results: int = 1000) -> PagedList[Experiment]:
        return self._mlflow.search_experiments(max_results=max_results)

    @with_retries
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self._mlflow.get_experiment_by_name(name)

    @with_retries
    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        return self._mlflow.create_experiment(name, artifact_location=artifact_location)

    @with_retries
    def restore_experiment(self, experiment_id: str) -> None:
        self._mlflow.restore_experiment(experiment_id)

    @with_retries
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._mlflow.set_experiment_tag(experiment_id, key, value)

    # --- runs -------------------------------------------------------------------------------------

    @with_retries
    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> Run:
        return self._mlflow.create_run(experiment_id, run_name=run_name, tags=dict(tags))

    @with_retries
    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        self._mlflow.update_run(run_id, status=status, name=name)

    @with_retries
    def delete_tag(self, run_id: str, key: str) -> None:
        self._mlflow.delete_tag(run_id, key)

    @with_retries
    def set_terminated(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self._mlflow.set_terminated(run_id, status=status, end_time=end_time)

    @with_retries
    def get_run(self, run_id: str) -> Run:
        return self._mlflow.get_run(run_id)

    @with_retries
    def search_runs(
        self, experiment_ids: list[str], filter_string: str, max_results: int, page_token: str | None
    ) -> PagedList[Run]:
        return self._mlflow.search_runs(experiment_ids, filter_string, max_results=max_results, page_token=page_token)

    @with_retries
    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self._mlflow.get_metric_history(run_id, key)

    @with_retries
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        self._mlflow.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    @with_retries
    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        self._mlflow.log_inputs(run_id, datasets=datasets)

    # --- artifacts --------------------------------------------------------------------------------

    @with_retries
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._mlflow.log_text(run_id, text, artifact_file)

    @with_retries
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(run_id, local_path, artifact_path)

    @with_retries
    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        self._mlflow.log_artifacts(run_id, local_dir, artifact_path)

    @with_retries
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self._mlflow.list_artifacts(run_id, path)

    @with_retries
    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        return self._mlflow.download_artifacts(run_id, path, dst_path)

    @with_retries
    def download_artifact_uri(self, artifact_uri: str, dst_path: str) -> str:
        """Any artifact URI MLflow resolves (a registered model's source, a local path), resolved against
        this client's store rather than MLflow's global tracking URI."""
        return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst_path, tracking_uri=self.uri)

    # --- the model registry -----------------------------------------------------------------------

    @with_retries
    def search_registered_models(self, filter_string: str) -> PagedList[RegisteredModel]:
        return self._mlflow.search_registered_models(filter_string)

    @with_retries
    def create_registered_model(self, name: str) -> RegisteredModel:
        return self._mlflow.create_registered_model(name)

    @with_retries
    def search_model_versions(self, filter_string: str) -> PagedList[ModelVersion]:
        return self._mlflow.search_model_versions(filter_string)

    @with_retries
    def create_model_version(self, name: str, source: str, run_id: str, tags: Mapping[str, Any]) -> ModelVersion:
        return self._mlflow.create_model_version(name, source, run_id=run_id, tags=dict(tags))

    @with_retries
    def get_model_version(self, name: str, version: str) -> ModelVersion:
        return self._mlflow.get_model_version(name, version)

    @with_retries
    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._mlflow.get_model_version_by_alias(name, alias)

    @with_retries
    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._mlflow.set_registered_model_alias(name, alias, version)
