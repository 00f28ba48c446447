"""The tracking seam: what the rest of netsweep calls on a store (`Store`) and on a run being written
(`RunLog`), and the plain records they hand back. Nothing here imports MLflow (or NumPy): the MLflow
implementation is src/tracking/mlflow_store.py, the in-memory one for tests is tests/fakes.py, and both
are checked against these Protocols (tests/unit/test_tracking_contract.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from src.outcomes import Outcome
from src.tracking import names

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Tags = Mapping[str, object]  # tag and param values are written as their str()


@dataclass
class RunRecord:
    """One run as netsweep reads it back: what it is, how it stands, what it logged."""

    run_id: str
    name: str
    experiment_id: str
    outcome: Outcome
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the last value of each metric
    tags: dict[str, str] = field(default_factory=dict)  # netsweep's tags (MLflow's own are left out)
    parent_run_id: str | None = None
    start_time_ms: int = 0


@dataclass(frozen=True)
class DatasetRecord:
    """What a run trained on, as recorded with it (MLflow shows it as the run's dataset input)."""

    name: str  # the data source, e.g. "digits"
    digest: str  # its fingerprint (src/data): equal data, equal digest
    source: str  # where it was read from
    layout: Mapping[str, Any]  # dtype, image_shape and pixel_max of the raw images
    rows: int  # training examples
    classes: int


class StepMetrics(NamedTuple):
    """The metrics of one step (an epoch) and when it ended (Unix time in ms), written later in a batch."""

    step: int
    metrics: Mapping[str, float]
    time_ms: int


class Registration(NamedTuple):
    """Where `register_model` left the alias: the model version it points at, and whether it moved."""

    version: int
    moved: bool


class SavedNet(Protocol):
    """A run's saved net, loaded back. It takes raw images in any layout the run's data could have had:
    (n, d) or (n, h, w), integer pixels or floats in [0, 1]."""

    def labels(self, images: np.ndarray) -> np.ndarray:
        """The predicted label of each image."""
        ...

    def table(self, images: np.ndarray) -> pd.DataFrame:
        """One row per image: its predicted `label`, then `p_0`, `p_1`, ... the class probabilities."""
        ...


class RunLog(Protocol):
    """One run being written as training goes: params, per-epoch metrics, artifacts, and how it ended."""

    @property
    def run_id(self) -> str: ...

    def set_tags(self, tags: Tags) -> None: ...

    def rename(self, name: str) -> None: ...

    def log_params(self, params: Tags) -> None:
        """Params, once each: a param logged again with another value is an error (as in MLflow)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, tags: Tags | None = None) -> None:
        """Metrics at `step` (an epoch), and tags in the same write."""
        ...

    def log_steps(self, steps: Sequence[StepMetrics], tags: Tags | None = None) -> None:
        """The metrics of several steps, each with its own time, in as few writes as the store takes; the
        tags (the state after the last step) with the last write."""
        ...

    def log_text(self, text: str, name: str) -> None: ...

    def log_file(self, path: Path, folder: str | None = None) -> None: ...

    def log_arrays(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        """Arrays as an .npz artifact, readable with allow_pickle=False."""
        ...

    def log_model(self, params: Mapping[str, np.ndarray], layout: Mapping[str, Any], example: np.ndarray) -> None:
        """The kept weights as the run's saved net (`runs:/<run id>/model`), with an input example."""
        ...

    def log_training_data(self, data: DatasetRecord) -> None: ...

    def reopen(self) -> None:
        """An ended run taking up work again (a resumed sweep's parent): RUNNING."""
        ...

    def reschedule(self) -> None:
        """A run waiting again for a worker, which continues it from its checkpoint: SCHEDULED."""
        ...

    def close(self, outcome: Outcome, reason: str | None = None) -> None:
        """End the run with `outcome` (and why, when it did not finish)."""
        ...


class Store(Protocol):
    """One tracking store (one URI): experiments, runs written and read back, saved nets and the registry."""

    uri: str

    def experiment_id(self, name: str, description: str = "") -> str:
        """The id of experiment `name`, created if missing; `description` becomes its note unless it has one."""
        ...

    def prefer_wal(self) -> None:
        """Let readers of a local SQLite store never block its writers (a no-op for other stores)."""
        ...

    def set_experiment_tags(self, experiment_id: str, tags: Tags) -> None:
        """Tags on the experiment (not on a run): what its UI reads, e.g. a saved view of the runs table."""
        ...

    def create_run(
        self,
        experiment_id: str,
        name: str,
        tags: Tags,
        parent_run_id: str | None = None,
        scheduled: bool = False,
    ) -> RunLog:
        """A new run, RUNNING (or SCHEDULED: created for a worker that has not started yet)."""
        ...

    def create_run_in(self, experiment: str, description: str, name: str, tags: Tags) -> RunLog:
        """A new RUNNING run in the experiment named `experiment` (created, with `description`, if missing)."""
        ...

    def attach_run(self, run_id: str, tags: Tags) -> RunLog:
        """Take over a run created elsewhere (a sweep's parent creates its children): RUNNING now."""
        ...

    def run_log(self, run_id: str) -> RunLog:
        """Write to an existing run without changing how it stands."""
        ...

    def run(self, run_id: str) -> RunRecord: ...

    def phase(self, run_id: str) -> Outcome: ...

    def runs(
        self,
        experiment_ids: Iterable[str],
        *,
        sweep_id: str | None = None,
        sweeps_only: bool = False,
        config_hash: str | None = None,
        outcomes: Iterable[Outcome] = (),
    ) -> list[RunRecord]:
        """Runs of the experiments matching every criterion given (and any one of `outcomes`)."""
        ...

    def results_by_config(self, experiment_id: str) -> dict[str, RunRecord]:
        """{config_hash: run} of the experiment's runs that ended with a result (see `result_per_config`)."""
        ...

    def find_sweep(self, sweep_id: str, experiment_id: str | None = None) -> RunRecord | None:
        """The parent run of sweep `sweep_id`, in one experiment or in any."""
        ...

    def sweeps(self) -> list[RunRecord]:
        """The parent runs of every sweep in the store (any experiment), newest first."""
        ...

    def history(self, run_id: str, metrics: Iterable[str] = names.EPOCH_METRICS) -> dict[str, list[float]]:
        """{metric: [value at epoch 1, epoch 2, ...]} as logged so far."""
        ...

    def epochs_logged(self, run_id: str) -> int: ...

    def read_json(self, run_id: str, name: str) -> dict[str, Any]:
        """A JSON artifact of a run, or {} when the run has none by that name."""
        ...

    def artifacts(self, run_id: str, folder: str = "") -> list[str]:
        """Paths of a run's artifacts (under `folder`, recursively)."""
        ...

    def load_model(self, uri: str) -> SavedNet:
        """A saved net: `runs:/<run id>/model`, `models:/<name>@<alias>`, a local path, or a bare run id."""
        ...

    def register_model(self, name: str, run_id: str, alias: str, tags: Tags) -> Registration:
        """Point `alias` of registered model `name` at the model of `run_id` (a new version only if that run
        has none yet)."""
        ...

    def evaluate_model(
        self, run_id: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = ()
    ) -> dict[str, float]:
        """mlflow.models.evaluate of the run's model on (images, labels): per-class metrics and a confusion
        matrix logged on the run, which stays as it ended. Returns the metrics."""
        ...


def result_per_config(runs: Iterable[RunRecord]) -> dict[str, RunRecord]:
    """{config_hash: run} over runs that ended with a result; a finished run wins over a diverged or pruned one."""
    best: dict[str, RunRecord] = {}
    for run in runs:
        key = run.tags.get(names.CONFIG_HASH)
        if key and run.outcome.is_result and (key not in best or run.outcome == Outcome.FINISHED):
            best[key] = run
    return best
