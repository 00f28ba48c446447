"""The one helper that runs the CLI, the one that reads a tracking store back, and small data files."""

import gzip
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IDX_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def cli_env(uri: str, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI")}
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def run_cli(args, cwd, uri=None, env_extra=None, timeout=600, module="src.run", background=False):
    """`python -m src.run ARGS` in `cwd`, recording into `uri` (default: cwd/mlflow.db).

    Returns the CompletedProcess, or with `background=True` the running Popen (text pipes)."""
    uri = uri or f"sqlite:///{Path(cwd) / 'mlflow.db'}"
    command = [sys.executable, "-m", module, *map(str, args)]
    env = cli_env(uri, env_extra)
    if background:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class StoreView:
    """What a tracking store holds for one experiment, read through MLflow's own client."""

    client: object
    runs: list

    @property
    def parents(self) -> list:
        return [r for r in self.runs if r.data.tags.get("netsweep.role") == "sweep"]

    @property
    def children(self) -> list:
        """Runs that trained (reused-result links excluded)."""
        return [
            r
            for r in self.runs
            if r.data.tags.get("netsweep.role") != "sweep" and "netsweep.reused_from" not in r.data.tags
        ]

    def under(self, parent) -> list:
        return [r for r in self.runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]

    def history(self, run, metric: str) -> list:
        points = self.client.get_metric_history(run.info.run_id, metric)
        return [m.value for m in sorted(points, key=lambda m: m.step)]

    def steps(self, run, metric: str) -> list:
        return sorted(m.step for m in self.client.get_metric_history(run.info.run_id, metric))

    def artifacts(self, run, folder: str = "") -> list:
        found = []
        for item in self.client.list_artifacts(run.info.run_id, folder or None):
            found.extend(self.artifacts(run, item.path) if item.is_dir else [item.path])
        return found


def read_store(uri: str, experiment: str = "netsweep") -> StoreView:
    """Every run of `experiment` in the store at `uri`, oldest first (empty when there is none)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else []
    return StoreView(client, list(runs))


def write_idx(path, array, magic=None, gz=True, truncate=0):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    payload = payload[: len(payload) - truncate]
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)
    return path


def write_idx_folder(folder, n_train=40, n_test=10, gz=True, rng=None, side=6):
    """Four small IDX files in MNIST's layout; returns the arrays written."""
    rng = rng or np.random.default_rng(0)
    arrays = {
        "X_train": rng.integers(0, 256, size=(n_train, side, side)),
        "y_train": np.arange(n_train) % 10,
        "X_test": rng.integers(0, 256, size=(n_test, side, side)),
        "y_test": np.arange(n_test) % 10,
    }
    for key, stem in IDX_FILES.items():
        write_idx(Path(folder) / (stem + (".gz" if gz else "")), arrays[key], gz=gz)
    return arrays


def wait_for(predicate, timeout: float = 120.0, every_s: float = 0.3):
    """What `predicate()` returns once it is truthy, polled every `every_s`; AssertionError after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError("timed out")


def checkpointed_epochs(folder: Path, run) -> int:
    """Epochs the checkpoint in `folder` of `run` (an MLflow Run) holds, 0 when it has none yet: how far a run
    has trained, to the epoch. The store lags by up to a second (src/experiment/epochs.py writes epochs
    together)."""
    from src.experiment import checkpoints

    saved = checkpoints.load(checkpoints.path_for(folder, run.info.run_id), run.data.tags["config_hash"])
    return int(saved.meta["epochs_done"]) if saved is not None else 0


def assert_ends_as_trained_alone(cwd, uri: str, run, epochs: int, experiment: str = "alone") -> None:
    """`run` (an MLflow Run) ends with the final metrics, bit for bit, of its config trained alone without a
    break (threads=1), into experiment `experiment` of the same store."""
    lr, decay = run.data.params["optimizer.lr"], run.data.params["model.decay"]
    args = [f"optimizer.lr={lr}", f"model.decay={decay}", f"epochs={epochs}", "threads=1"]
    alone = run_cli([*args, f"tracking.experiment={experiment}"], cwd, uri=uri)
    assert alone.returncode == 0, alone.stderr
    (unbroken,) = [r for r in read_store(uri, experiment).runs if r.data.tags.get("netsweep.role") != "sweep"]
    for metric in ("test_acc", "test_loss", "insample_acc", "insample_loss", "best_epoch", "best_val_ce"):
        assert run.data.metrics[metric] == unbroken.data.metrics[metric], metric
