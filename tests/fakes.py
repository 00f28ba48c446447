"""Stand-ins for a sweep's collaborators: a tracking store held in memory and a worker pool that runs
jobs in this process, each able to misbehave the ways real ones do."""

import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.outcomes import RESULTS, Outcome
from src.sweep.slots import WorkerDied
from src.tracking import names
from src.tracking.api import DatasetRecord, Registration, RunRecord, StepMetrics, Tags, result_per_config


class FakeRunLog:
    """The `RunLog` of src/tracking/api.py, writing into a FakeStore."""

    def __init__(self, store: "FakeStore", run_id: str):
        self.store, self.run_id = store, run_id

    @property
    def record(self) -> RunRecord:
        return self.store.records[self.run_id]

    def _artifact(self, name: str, content: str) -> None:
        self.store.artifacts_of.setdefault(self.run_id, {})[name] = content

    def set_tags(self, tags: Tags) -> None:
        self.record.tags.update({k: str(v) for k, v in tags.items()})

    def rename(self, name: str) -> None:
        self.record.name = name

    def log_params(self, params: Tags) -> None:
        for key, value in params.items():  # as MLflow: a param, once logged, keeps its value
            if self.record.params.setdefault(key, str(value)) != str(value):
                raise ValueError(f"Changing param values is not allowed: {key}")

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, tags: Tags | None = None) -> None:
        self.set_tags(tags or {})
        for key, value in metrics.items():
            self.record.metrics[key] = float(value)
            self.store.histories.setdefault(self.run_id, {}).setdefault(key, []).append((step, float(value)))

    def log_steps(self, steps: Sequence[StepMetrics], tags: Tags | None = None) -> None:
        for at in steps:
            self.log_metrics(at.metrics, at.step)
        self.set_tags(tags or {})

    def log_text(self, text: str, name: str) -> None:
        self._artifact(name, text)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self._artifact(f"{folder}/{path.name}" if folder else path.name, "<file>")

    def log_arrays(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        self.store.arrays_of[(self.run_id, name)] = {key: np.array(value) for key, value in arrays.items()}
        self._artifact(name, "<arrays>")

    def log_model(self, params: Mapping[str, np.ndarray], layout: Mapping[str, Any], example: np.ndarray) -> None:
        self.store.models[self.run_id] = FakeNet({key: np.array(value) for key, value in params.items()}, layout)
        self._artifact(f"{names.MODEL}/MLmodel", "<model>")

    def log_training_data(self, data: DatasetRecord) -> None:
        self.store.datasets[self.run_id] = data

    def reopen(self) -> None:
        self.store.status[self.run_id] = self.record.outcome = Outcome.RUNNING
        self.set_tags({names.OUTCOME: Outcome.RUNNING.value})

    def reschedule(self) -> None:
        self.store.status[self.run_id] = self.record.outcome = Outcome.SCHEDULED
        self.set_tags({names.OUTCOME: Outcome.SCHEDULED.value})

    def close(self, outcome: Outcome, reason: str | None = None) -> None:
        self.set_tags({names.OUTCOME: Outcome(outcome).value, **({names.FAILURE_REASON: reason} if reason else {})})
        self.store.status[self.run_id] = Outcome(outcome)
        self.record.outcome = Outcome(outcome)


class FakeNet:
    """The `SavedNet` of src/tracking/api.py: the forward pass of the logged weights on pixels in [0, 1]
    (or in raw units up to the layout's pixel_max)."""

    def __init__(self, params: dict, layout: Mapping[str, Any]):
        self.params, self.pixel_max = params, layout.get("pixel_max", 1)

    def _logits(self, images: np.ndarray) -> np.ndarray:
        X = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        X = X / self.pixel_max if X.size and X.max() > 1 else X
        hidden = np.maximum(X @ self.params["W1"] + self.params["b1"], 0)  # (n, d) @ (d, H) -> (n, H)
        return hidden @ self.params["W2"] + self.params["b2"]  # (n, H) @ (H, k) -> (n, k)

    def labels(self, images: np.ndarray) -> np.ndarray:
        return self._logits(images).argmax(axis=1)

    def table(self, images: np.ndarray) -> pd.DataFrame:
        z = self._logits(images)
        proba = np.exp(z - z.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        table = pd.DataFrame(proba, columns=[f"p_{k}" for k in range(proba.shape[1])])
        table.insert(0, "label", z.argmax(axis=1))
        return table


class FakeStore:
    """The `Store` of src/tracking/api.py, in memory (tests/unit/test_tracking_contract.py keeps the two in
    step)."""

    def __init__(self, uri: str = "fake://store"):
        self.uri = uri
        self.experiments: dict = {}
        self.experiment_tags: dict = {}
        self.records: dict = {}
        self.status: dict = {}
        self.histories: dict = {}
        self.artifacts_of: dict = {}
        self.arrays_of: dict = {}
        self.models: dict = {}
        self.datasets: dict = {}
        self._ids = itertools.count(1)
        self.evaluated: list = []
        self.registry: dict = {}

    def experiment_id(self, name: str, description: str = "") -> str:
        return self.experiments.setdefault(name, str(len(self.experiments) + 1))

    def prefer_wal(self) -> None:
        pass

    def set_experiment_tags(self, experiment_id: str, tags: Tags) -> None:
        self.experiment_tags.setdefault(experiment_id, {}).update({k: str(v) for k, v in tags.items()})

    def create_run(
        self,
        experiment_id: str,
        name: str,
        tags: Tags,
        parent_run_id: str | None = None,
        scheduled: bool = False,
    ) -> FakeRunLog:
        run_id = f"run{next(self._ids)}"
        phase = Outcome.SCHEDULED if scheduled else Outcome.RUNNING
        self.records[run_id] = RunRecord(
            run_id,
            name,
            experiment_id,
            phase,
            tags={k: str(v) for k, v in tags.items()},
            parent_run_id=parent_run_id,
            start_time_ms=time.time_ns() // 1_000_000,
        )
        self.status[run_id] = self.records[run_id].outcome
        return FakeRunLog(self, run_id)

    def create_run_in(self, experiment: str, description: str, name: str, tags: Tags) -> FakeRunLog:
        return self.create_run(self.experiment_id(experiment, description), name, tags)

    def attach_run(self, run_id: str, tags: Tags) -> FakeRunLog:
        self.status[run_id] = self.records[run_id].outcome = Outcome.RUNNING
        log = FakeRunLog(self, run_id)
        log.set_tags({names.OUTCOME: Outcome.RUNNING.value, **tags})
        return log

    def run_log(self, run_id: str) -> FakeRunLog:
        return FakeRunLog(self, run_id)

    def run(self, run_id: str) -> RunRecord:
        return self.records[run_id]

    def phase(self, run_id: str) -> Outcome:
        return self.status[run_id]

    def runs(
        self,
        experiment_ids: Iterable[str],
        *,
        sweep_id: str | None = None,
        sweeps_only: bool = False,
        config_hash: str | None = None,
        outcomes: Iterable[Outcome] = (),
    ) -> list[RunRecord]:
        experiments, wanted = set(experiment_ids), {Outcome(o).value for o in outcomes}
        return [
            r
            for r in self.records.values()
            if r.experiment_id in experiments
            and (not sweep_id or r.tags.get(names.SWEEP_ID) == sweep_id)
            and (not sweeps_only or r.tags.get(names.ROLE) == names.ROLE_SWEEP)
            and (not config_hash or r.tags.get(names.CONFIG_HASH) == config_hash)
            and (not wanted or r.tags.get(names.OUTCOME) in wanted)
        ]

    def results_by_config(self, experiment_id: str) -> dict[str, RunRecord]:
        return result_per_config(self.runs([experiment_id], outcomes=RESULTS))

    def find_sweep(self, sweep_id: str, experiment_id: str | None = None) -> RunRecord | None:
        found = self.runs(
            list(self.experiments.values()) if experiment_id is None else [experiment_id],
            sweep_id=sweep_id,
            sweeps_only=True,
        )
        return found[0] if found else None

    def sweeps(self) -> list[RunRecord]:
        found = self.runs(list(self.experiments.values()), sweeps_only=True)
        return sorted(found, key=lambda run: run.start_time_ms, reverse=True)

    def history(self, run_id: str, metrics: Iterable[str] = names.EPOCH_METRICS) -> dict[str, list[float]]:
        logged = self.histories.get(run_id, {})
        return {key: [v for _, v in sorted(logged.get(key, []))] for key in metrics}

    def epochs_logged(self, run_id: str) -> int:
        return len(self.histories.get(run_id, {}).get("val_acc", []))

    def read_json(self, run_id: str, name: str) -> dict[str, Any]:
        text = self.artifacts_of.get(run_id, {}).get(name)
        return json.loads(text) if text else {}

    def artifacts(self, run_id: str, folder: str = "") -> list[str]:
        logged = sorted(self.artifacts_of.get(run_id, {}))
        return [path for path in logged if not folder or path.startswith(folder.rstrip("/") + "/")]

    def load_model(self, uri: str) -> FakeNet:
        run_id = uri.removeprefix("runs:/").split("/")[0]
        if run_id not in self.models:
            raise LookupError(f"no model at {uri}")
        return self.models[run_id]

    def register_model(self, name: str, run_id: str, alias: str, tags: Tags) -> Registration:
        versions = self.registry.setdefault(name, [])
        if versions and versions[-1] == run_id:
            return Registration(len(versions), moved=False)
        versions.append(run_id)
        return Registration(len(versions), moved=True)

    def evaluate_model(
        self, run_id: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = ()
    ) -> dict[str, float]:
        self.evaluated.append(run_id)
        return {"accuracy_score": 1.0}

    def children_of(self, parent_run_id: str) -> list[RunRecord]:
        """Test-only: the runs created under a parent run."""
        return [r for r in self.records.values() if r.parent_run_id == parent_run_id]


class WorkerVanished(BaseException):
    """Raised by a fake task to make the InlinePool break as if its worker had been lost mid-job."""


class InlinePool:
    """Runs each call in this process, in order. `die` holds job numbers whose worker "dies" (a WorkerDied
    comes back); `break_after` makes the pool itself break after that many results, once."""

    threads = 1
    n_workers = 1

    def __init__(self, settings=None, n_tasks: int = 1, die=(), break_after: int | None = None):
        self.die, self.break_after = set(die), break_after
        self.opened = self.closed = self.restarts = 0
        self.aborted = False
        self.ran: list = []

    def __call__(self, settings, n_tasks):  # used as the runner's pool factory
        return self

    def open(self) -> "InlinePool":
        self.opened += 1
        return self

    def check_store(self, uri: str | None) -> None:
        pass

    def run(self, calls):
        for count, (function, args) in enumerate(calls):
            if self.break_after is not None and count == self.break_after:
                self.break_after = None
                raise RuntimeError("the pool broke (a worker was lost)")
            configs = args[0] if isinstance(args[0], list) else [args[0]]  # a pack's call: its jobs' configs
            numbers = [config.hydra.job.num for config in configs]
            self.ran.extend(numbers)
            if self.die.intersection(numbers):
                for config in configs:  # as kill -9 in the middle of writing its checkpoint would leave it
                    folder = Path(config.tracking.checkpoint_dir)
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f".{config.tracking.run_id}.ckpt.npz.k1ll.tmp").write_bytes(b"half")
                yield WorkerDied(args, "SIGKILL")
                continue
            try:
                result = function(*args)
            except WorkerVanished:
                raise RuntimeError("the pool broke: a worker was lost") from None
            yield result

    def restart(self) -> None:
        self.restarts += 1

    def warm_up(self, function) -> None:
        self.warmed_up = function

    def close(self, abort: bool = False) -> None:
        self.closed += 1
        self.aborted = abort
