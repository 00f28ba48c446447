"""The trained net in MLflow's own terms: saved as a `pyfunc` model on its run, its training data recorded as
the run's dataset input, a sweep's winner registered under a name with an alias, and a model evaluated by
`mlflow.models.evaluate` (per-class precision and recall, a confusion matrix)."""

import json
import logging
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.models import ModelSignature
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec
from threadpoolctl import __version__ as THREADPOOLCTL_VERSION

from src.tracking import names

MODEL_CODE = Path(__file__).with_name("pyfunc_net.py")  # copied into every model: it imports nothing of ours
EXAMPLE_ROWS = 5


def signature(layout: dict) -> ModelSignature:
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


def save_model(run, params: dict, layout: dict, example: np.ndarray) -> None:
    """Log `params` (the kept weights) as the pyfunc model `model/` of `run` (a RunLog)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        np.savez(folder / names.WEIGHTS, **params)
        (folder / "input_format.json").write_text(json.dumps(layout))
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
        run.log_folder(folder / names.MODEL, names.MODEL)


def log_dataset(run, name: str, digest: str, source: str, layout: dict, rows: int, classes: int) -> None:
    """The run's training data as an MLflow dataset input (the UI's Dataset column and lineage)."""
    schema = {
        "mlflow_tensorspec": {
            "features": json.dumps(
                [{"type": "tensor", "tensor-spec": {"dtype": layout["dtype"], "shape": [-1, *layout["image_shape"]]}}]
            )
        }
    }
    dataset = Dataset(
        name=name,
        digest=digest,
        source_type="local",
        source=json.dumps({"uri": source}),
        schema=json.dumps(schema),
        profile=json.dumps({"num_rows": rows, "num_classes": classes}),
    )
    run.log_inputs([DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])


def quoted(value: str) -> str:
    """A value in an MLflow search filter."""
    return "'" + str(value).replace("'", "\\'") + "'"


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{names.MODEL}"


def load(store, uri: str):
    """A saved net (`runs:/<id>/model`, `models:/<name>@<alias>`, a path) of `store` as a pyfunc model."""
    mlflow.set_tracking_uri(store.uri)  # what runs:/ and models:/ URIs are resolved against
    with warnings.catch_warnings():  # MLflow's advice to add type hints: the model has an explicit signature
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.load_model(uri)


def register(store, name: str, run_id: str, alias: str, tags: dict) -> tuple[str | None, bool]:
    """Point `alias` of the registered model `name` at the model of `run_id`: the version registered for that
    run already, or a new one. Returns (version, moved); moved is False when the alias pointed there."""
    client = store._client
    try:
        current = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        current = None
    if current is not None and current.run_id == run_id:
        return current.version, False
    if not client.search_registered_models(f"name = {quoted(name)}"):
        client.create_registered_model(name)
    earlier = client.search_model_versions(f"name = {quoted(name)} and run_id = {quoted(run_id)}")
    version = (
        min(earlier, key=lambda v: int(v.version))
        if earlier
        else client.create_model_version(name, model_uri(run_id), run_id=run_id, tags=tags)
    )
    client.set_registered_model_alias(name, alias, version.version)
    return version.version, True


def evaluate(store, run_id: str, images: np.ndarray, labels: np.ndarray) -> dict:
    """Evaluate the run's model on (images, labels) with `mlflow.models.evaluate` (classifier), logging its
    per-class metrics and confusion matrix on the run itself; returns the metrics it computed.

    The evaluator hands the model rows of features; they are given back their image shape on the way in."""
    model = load(store, model_uri(run_id))
    shape, dtype = images.shape[1:], images.dtype

    def predict(rows) -> np.ndarray:
        rows = rows.to_numpy() if isinstance(rows, pd.DataFrame) else np.asarray(rows)
        return model.predict(rows.reshape(-1, *shape).astype(dtype, copy=False))

    evaluator_log = logging.getLogger("mlflow.models.evaluation")
    level = evaluator_log.level
    evaluator_log.setLevel(logging.ERROR)  # its guess of the model type from integer labels: moot, it is given
    ended = store._client.get_run(run_id).info
    try:
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = mlflow.models.evaluate(
                predict,
                images.reshape(len(images), -1),
                targets=labels,
                model_type="classifier",
                evaluators=["default"],
                evaluator_config={"default": {"log_model_explainability": False}},
            )
    finally:  # the run had ended: evaluating it (or failing to) must not change its status or end time
        evaluator_log.setLevel(level)
        store._client.set_terminated(run_id, ended.status, ended.end_time)
    return dict(result.metrics)
