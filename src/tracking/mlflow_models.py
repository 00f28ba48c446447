"""The trained net in MLflow's own terms: saved as a `pyfunc` model on its run, its training data recorded as
the run's dataset input, a sweep's winner registered under a name with an alias, a saved net loaded back,
and a model evaluated by `mlflow.models.evaluate` (per-class precision and recall, a confusion matrix).

Everything goes through the store's own client (src/tracking/mlflow_client.py): `runs:/` and `models:/`
URIs are resolved by it, not by MLflow's global tracking URI, and the one MLflow API that works only
through global state (`mlflow.models.evaluate` logs into the active run) gets it for the call only, and
logs into a scratch run of a scratch store whose records are then copied onto the evaluated run.
"""

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PyFuncModel
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches
from threadpoolctl import __version__ as THREADPOOLCTL_VERSION

from src.tracking import names
from src.tracking.api import DatasetRecord, Registration, Tags
from src.tracking.mlflow_client import TrackingClient

MODEL_CODE = Path(__file__).with_name("pyfunc_net.py")  # copied into every model: it imports nothing of ours
EXAMPLE_ROWS = 5
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # mlflow.set_tracking_uri sets it too, for subprocesses


def signature(layout: Mapping[str, Any]) -> ModelSignature:
    """Input: images as the training data stores them; output: labels; param: `probabilities`."""
    inputs = Schema([TensorSpec(np.dtype(layout["dtype"]), (-1, *layout["image_shape"]))])
    outputs = Schema([TensorSpec(np.dtype("int64"), (-1,))])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("probabilities", "boolean", False)]))


def requirements() -> list[str]:
    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"threadpoolctl=={THREADPOOLCTL_VERSION}",
    ]


_REQUIREMENTS_CHECK = threading.Lock()
_requirements_checked: list[bool] = []  # one entry once this process has checked them


def check_requirements() -> None:
    """What MLflow does before it saves a model: check the model's requirements against the installed
    packages, which the first time in a process lists every file of every installed distribution (a
    fraction of a second, mostly waiting on the file system; later saves reuse MLflow's map). The store
    runs it in a thread of its own as it opens (`warm_up`), beside the run; a save waits for it, once."""
    with _REQUIREMENTS_CHECK:
        if not _requirements_checked:
            warn_dependency_requirement_mismatches(requirements())  # netsweep pins what is installed: no warning
            _requirements_checked.append(True)


def warm_up() -> threading.Thread:
    """Start `check_requirements` beside whatever this process does next (the thread ends with the process)."""
    thread = threading.Thread(target=check_requirements, name="netsweep-requirements", daemon=True)
    thread.start()
    return thread


def save_model(
    client: TrackingClient,
    run_id: str,
    params: Mapping[str, np.ndarray],
    layout: Mapping[str, Any],
    example: np.ndarray,
) -> None:
    """Log `params` (the kept weights) as the pyfunc model `model/` of run `run_id`."""
    check_requirements()  # done already, or under way in the store's warm-up thread: waits for it
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        named: dict[str, Any] = dict(params)  # names as the .npz keys (none is savez's own allow_pickle)
        np.savez(folder / names.WEIGHTS, **named)
        (folder / "input_format.json").write_text(json.dumps(dict(layout)))
        with warnings.catch_warnings():  # about type hints: the signature is given explicitly
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(
                path=folder / names.MODEL,
                python_model=str(MODEL_CODE),
                artifacts={"weights": str(folder / names.WEIGHTS), "input_format": str(folder / "input_format.json")},
                signature=signature(layout),
                input_example=example[:EXAMPLE_ROWS],
                pip_requirements=requirements(),
            )
        client.log_artifacts(run_id, str(folder / names.MODEL), names.MODEL)


def log_dataset(client: TrackingClient, run_id: str, data: DatasetRecord) -> None:
    """The run's training data as an MLflow dataset input (the UI's Dataset column and lineage)."""
    tensor = {"dtype": data.layout["dtype"], "shape": [-1, *data.layout["image_shape"]]}
    schema = {"mlflow_tensorspec": {"features": json.dumps([{"type": "tensor", "tensor-spec": tensor}])}}
    dataset = Dataset(
        name=data.name,
        digest=data.digest,
        source_type="local",
        source=json.dumps({"uri": data.source}),
        schema=json.dumps(schema),
        profile=json.dumps({"num_rows": data.rows, "num_classes": data.classes}),
    )
    client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])


def quoted(value: str) -> str:
    """A value in an MLflow search filter."""
    return "'" + str(value).replace("'", "\\'") + "'"


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{names.MODEL}"


def _registered_version(client: TrackingClient, uri: str) -> ModelVersion | None:
    """The model version `models:/<name>@<alias>` or `models:/<name>/<version>` names (None: another form)."""
    name, _, version = uri.removeprefix("models:/").partition("/")
    name, at, alias = name.partition("@")
    if at:
        return client.get_model_version_by_alias(name, alias)
    return client.get_model_version(name, version) if version.isdigit() else None


def _local_copy(client: TrackingClient, uri: str, folder: str) -> str:
    """The saved model at `uri`, downloaded from the client's store into `folder`: its local path."""
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return client.download_artifacts(run_id, path, folder)
    version = _registered_version(client, uri) if uri.startswith("models:/") else None
    if version is not None and version.source:
        return _local_copy(client, version.source, folder)  # netsweep registers runs:/<run id>/model
    return client.download_artifact_uri(uri, folder)  # a local path, or a form only MLflow resolves


def _pyfunc(client: TrackingClient, uri: str) -> PyFuncModel:
    """The saved net at `uri` as MLflow loads it (its code and artifacts read into memory as it loads)."""
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's advice to add type hints: the signature is explicit
        return mlflow.pyfunc.load_model(_local_copy(client, uri, folder))


class LoadedNet:
    """A saved net (`SavedNet`): the model's own code, called without MLflow's input check, so that it takes
    any layout of images (src/tracking/pyfunc_net.py)."""

    def __init__(self, model: PyFuncModel):
        self._net = model.unwrap_python_model()

    def labels(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._net.predict(None, images))

    def table(self, images: np.ndarray) -> pd.DataFrame:
        table: pd.DataFrame = self._net.predict(None, images, params={"probabilities": True})
        return table


def load(client: TrackingClient, uri: str) -> LoadedNet:
    """A saved net (`runs:/<id>/model`, `models:/<name>@<alias>`, a path) of the client's store."""
    return LoadedNet(_pyfunc(client, uri))


def register(client: TrackingClient, name: str, run_id: str, alias: str, tags: Tags) -> Registration:
    """Point `alias` of the registered model `name` at the model of `run_id`: the version registered for that
    run already, or a new one. `moved` is False when the alias pointed there already."""
    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        current = None
    if current is not None and current.run_id == run_id:
        return Registration(int(current.version), moved=False)
    if not client.search_registered_models(f"name = {quoted(name)}"):
        client.create_registered_model(name)
    earlier = client.search_model_versions(f"name = {quoted(name)} and run_id = {quoted(run_id)}")
    version = (
        min(earlier, key=lambda v: int(v.version))
        if earlier
        else client.create_model_version(name, model_uri(run_id), run_id, {k: str(v) for k, v in tags.items()})
    )
    client.set_registered_model_alias(name, alias, str(version.version))
    return Registration(int(version.version), moved=True)


@contextlib.contextmanager
def _active_run(client: TrackingClient, run_id: str) -> Iterator[None]:
    """Run `run_id` of the client's store as MLflow's active run for the block, which is the only way
    `mlflow.models.evaluate` logs into a given run. Its global tracking URI, and the MLFLOW_TRACKING_URI
    that setting it sets too, are as they were afterwards: nothing else this process (or a worker it
    starts) does is pointed at this store by it."""
    environment = os.environ.get(TRACKING_URI_ENV)
    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    pinned = None if previous == environment else previous  # a URI set in code, not only in the environment
    mlflow.set_tracking_uri(client.uri)
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:
        mlflow.set_tracking_uri(pinned)  # type: ignore[arg-type]  # None unsets it, though the hint says str
        if environment is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = environment


def _scratch_run(folder: Path) -> tuple[TrackingClient, str]:
    """A run in a new store of its own in `folder` (a copy of the pristine store, its artifacts there too),
    for `mlflow.models.evaluate` to log into."""
    from src.tracking.sqlite_files import open_sqlite  # deferred: only an evaluation needs a store of its own

    scratch = open_sqlite(folder / "evaluation.db")
    experiment = scratch.create_experiment("evaluation", artifact_location=(folder / "artifacts").as_uri())
    return scratch, scratch.create_run(experiment, run_name="evaluation", tags={}).info.run_id


def _copy_evaluation(scratch: TrackingClient, scratch_id: str, client: TrackingClient, run_id: str) -> None:
    """What the evaluation logged on the scratch run (metrics, artifacts, the evaluation dataset), onto the
    run it evaluated: the run itself is never reopened (MLflow would mark it RUNNING while it evaluates,
    and a process killed then would leave it so)."""
    logged = scratch.get_run(scratch_id)
    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, 0) for key, value in logged.data.metrics.items()]
    client.log_batch(run_id, metrics=metrics)
    inputs = logged.inputs.dataset_inputs if logged.inputs else []
    if inputs:
        client.log_inputs(run_id, [DatasetInput(i.dataset, i.tags) for i in inputs])
    artifacts = Path(urllib.parse.urlparse(logged.info.artifact_uri).path)
    for path in sorted(artifacts.rglob("*")):
        if path.is_file():
            folder = path.parent.relative_to(artifacts).as_posix()
            client.log_artifact(run_id, str(path), None if folder == "." else folder)


def evaluate(
    client: TrackingClient, run_id: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = ()
) -> dict[str, float]:
    """Evaluate the run's model on (images, labels) with `mlflow.models.evaluate` (classifier), logging its
    per-class metrics, confusion matrix and evaluation dataset on the run; returns the metrics it computed.
    With `classes` (names in label order), labels are shown as 'k name' ('9 Ankle boot': MLflow sorts the
    labels as text, and the number keeps them in label order).

    The evaluator logs into a scratch run of a scratch store, whose records are then copied onto the run:
    the run keeps the status and end time it had throughout. The evaluator hands the model rows of
    features; they are given back their image shape on the way in."""
    model = _pyfunc(client, model_uri(run_id))
    shape, dtype = images.shape[1:], images.dtype
    shown = np.array([f"{k} {name}" for k, name in enumerate(classes)]) if len(classes) else None

    def predict(rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        rows = rows.to_numpy() if isinstance(rows, pd.DataFrame) else np.asarray(rows)
        predicted: np.ndarray = np.asarray(model.predict(rows.reshape(-1, *shape).astype(dtype, copy=False)))
        return shown[predicted] if shown is not None else predicted

    evaluator_log = logging.getLogger("mlflow.models.evaluation")
    level = evaluator_log.level
    evaluator_log.setLevel(logging.ERROR)  # its guess of the model type from integer labels: moot, it is given
    try:
        with tempfile.TemporaryDirectory(prefix="netsweep-evaluation-") as folder:
            scratch, scratch_id = _scratch_run(Path(folder))
            with _active_run(scratch, scratch_id), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                result = mlflow.models.evaluate(
                    predict,
                    images.reshape(len(images), -1),
                    targets=shown[labels] if shown is not None else labels,
                    model_type="classifier",
                    evaluators=["default"],
                    evaluator_config={"default": {"log_model_explainability": False}},
                )
            _copy_evaluation(scratch, scratch_id, client, run_id)
    finally:
        evaluator_log.setLevel(level)
    return dict(result.metrics)
