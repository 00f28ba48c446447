"""One composed config -> one trained net -> one MLflow run. Used by single runs and by every sweep job.

Order matters for the user: config values are checked and data is loaded (both may fail with a clear
message) before a run is created, so a typo never leaves an empty or RUNNING run behind. Once the run
exists, every way out of training (finished, diverged, error, Ctrl-C) closes it with its outcome.
"""

import contextlib
import importlib
import logging
import os
import socket
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, config_hash, flatten, run_name, to_plain, validate
from src.data import Dataset, load_dataset
from src.nn.mlp import evaluate, init_params
from src.nn.optim import build_optimizer
from src.nn.train import Diverged, FitResult, History, fit

log = logging.getLogger("netsweep")


class RunDiverged(Exception):
    """Raised after a diverged run was recorded, so the process can exit non-zero with one line."""


class WorkerLost(RuntimeError):
    """A sweep job found its run already started: the engine is retrying it after losing a worker."""


@dataclass
class RunSummary:
    run_id: str
    tracking_uri: str
    test_acc: float
    best_val_loss: float
    figure_path: Optional[Path]


def prepare(cfg: DictConfig) -> Dataset:
    """Check the config and load its data: everything that can fail before a run is recorded."""
    validate(cfg)
    dataset = load_dataset(cfg.data, cfg.seed)
    if cfg.optimizer.batch_size > len(dataset.y_train):
        raise ConfigError(
            f"optimizer.batch_size={cfg.optimizer.batch_size} is larger than the {len(dataset.y_train)} "
            "training images; use a smaller batch size"
        )
    return dataset


def train(cfg: DictConfig, dataset: Dataset, on_epoch_end) -> FitResult:
    """The net of `cfg`, trained on `dataset`; seeded so the same config gives the same metrics."""
    init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    params = init_params(
        dataset.input_dim,
        cfg.model.hidden_size,
        dataset.num_classes,
        init_rng,
        dtype=np.dtype(cfg.model.dtype.value),
        scheme=cfg.model.init.value,
    )
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer), params, cfg.model.decay)
    return fit(
        params,
        dataset.X_train,
        dataset.y_train,
        dataset.X_val,
        dataset.y_val,
        optimizer=optimizer,
        decay=cfg.model.decay,
        batch_size=cfg.optimizer.batch_size,
        epochs=cfg.epochs,
        rng=shuffle_rng,
        divergence_factor=cfg.divergence_factor,
        on_epoch_end=on_epoch_end,
    )


def final_metrics(result: FitResult, dataset: Dataset, decay: float) -> dict:
    """Test and in-sample scores of the kept (best validation loss) parameters, plus the best epochs."""
    test_loss, test_acc = evaluate(result.params, dataset.X_test, dataset.y_test, decay)
    insample_loss, insample_acc = evaluate(result.params, dataset.X_train, dataset.y_train, decay)
    history = result.history.metrics
    return {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "insample_acc": insample_acc,
        "insample_loss": insample_loss,
        "best_epoch": result.best_epoch,
        "best_val_loss": min(history["val_loss"]),
        "best_val_acc": max(history["val_acc"]),
    }


def history_csv(history: History) -> str:
    rows = history.rows()
    if not rows:
        return "epoch\n"
    header = ",".join(rows[0])
    return "\n".join([header] + [",".join(f"{value:.9g}" for value in row.values()) for row in rows]) + "\n"


def _local_output_dir() -> Optional[Path]:
    """Hydra's output directory of this job, when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return None


def run_config(cfg: DictConfig) -> RunSummary:
    """Train the net `cfg` describes and record it as one MLflow run.

    Raises ConfigError/DataError before any run exists; RunDiverged, KeyboardInterrupt or the original
    exception after the run was closed with outcome diverged, killed or error.
    """
    tracking_ready = import_in_background("src.tracking")  # ~1.5 s of imports, overlapped with data loading
    try:
        dataset = prepare(cfg)
    except Exception:
        if cfg.tracking.run_id:  # a sweep created this run already: close it rather than leave it SCHEDULED
            tracking = tracking_ready()
            _end_with_error(tracking.RunRecorder.attach(_client(cfg, tracking), cfg.tracking.run_id, {}))
        raise
    tracking = tracking_ready()
    from src import plots

    overrides = _task_overrides()
    name = run_name(cfg, overrides or ())
    recorder = _open_run(cfg, dataset, tracking, name, overrides)
    title = f"{name}  ({cfg.data.name}, {cfg.optimizer.name}, batch {cfg.optimizer.batch_size})"
    log.info(f"run {recorder.run_id} ({name}) on {dataset.summary()}")
    with _closing_on_failure(recorder):
        try:
            recorder.log_params(flatten(to_plain(cfg)))
            recorder.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            result = train(cfg, dataset, _epoch_logger(recorder, cfg.epochs))
        except Diverged as stop:
            _record_history(recorder, plots, stop.history, title, None, diverged_at=stop.epoch)
            recorder.end("diverged", str(stop))
            raise RunDiverged(f"run {recorder.run_id} {stop}; try a smaller optimizer.lr") from None
        metrics = final_metrics(result, dataset, cfg.model.decay)
        recorder.log_metrics({**metrics, "peak_rss_mb": peak_rss_mb()}, step=cfg.epochs)
        figure_path = _record_history(recorder, plots, result.history, title, result.best_epoch)
        if cfg.tracking.log_weights:
            recorder.log_arrays(result.params, "weights.npz")
        recorder.end("finished")
    log.info(
        f"test accuracy {metrics['test_acc']:.4f} (in-sample {metrics['insample_acc']:.4f}, "
        f"best epoch {result.best_epoch})"
    )
    return RunSummary(recorder.run_id, recorder.client.tracking_uri, metrics["test_acc"], metrics["best_val_loss"],
                      figure_path)


def _open_run(cfg: DictConfig, dataset: Dataset, tracking, name: str, overrides: Optional[list]):
    """The run this config records into: created here, or the one a sweep created for it."""
    client = _client(cfg, tracking)
    tags = {
        "config_hash": config_hash(cfg),
        "data_fingerprint": dataset.fingerprint,
        "data": dataset.summary(),
        "outcome": "running",
        "blas_threads": blas_threads(),
        "host": socket.gethostname(),
        "worker_pid": os.getpid(),
        **tracking.git_tags(),
    }
    if overrides is not None:
        tags["overrides"] = " ".join(overrides)
    if cfg.tracking.run_id:
        _refuse_a_second_attempt(client, cfg.tracking.run_id, tracking)
        return tracking.RunRecorder.attach(client, cfg.tracking.run_id, tags)
    experiment_id = tracking.ensure_experiment(client, cfg.tracking.experiment)
    return tracking.RunRecorder.create(client, experiment_id, name, tags)


def _epoch_logger(recorder, epochs: int):
    """Log each epoch to MLflow as it ends, and print its line."""
    width = len(str(epochs))

    def on_epoch_end(epoch: int, row: dict) -> None:
        recorder.log_metrics(row, step=epoch)
        log.info(
            f"epoch {epoch:>{width}}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
            f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  {row['epoch_time_s']:.2f}s"
        )

    return on_epoch_end


@contextlib.contextmanager
def _closing_on_failure(recorder):
    """Whatever interrupts the run ends it: KILLED on Ctrl-C or SIGTERM, FAILED with a traceback on an error."""
    try:
        yield
    except RunDiverged:
        raise  # already recorded
    except KeyboardInterrupt:
        recorder.end("killed", "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException:
        _end_with_error(recorder)
        raise


def import_in_background(module: str):
    """Start importing `module` in a thread; the returned function waits for it and returns the module."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(module=importlib.import_module(module)), daemon=True)
    thread.start()

    def wait():
        thread.join()
        return result["module"] if "module" in result else importlib.import_module(module)  # re-raise its error

    return wait


def _refuse_a_second_attempt(client, run_id: str, tracking) -> None:
    """A distributed engine re-runs a task whose worker died. Training again into the same run would log
    every epoch twice, so the lost attempt ends `killed` and a rerun of the sweep trains the config anew."""
    status = client.get_run(run_id).info.status
    if status == "SCHEDULED":
        return
    reason = "its worker was lost while it trained; rerun the sweep to train it again"
    if status == "RUNNING":
        tracking.RunRecorder(client, run_id).end("killed", reason)
    raise WorkerLost(f"run {run_id}: {reason}")


def _client(cfg: DictConfig, tracking):
    return tracking.get_client(tracking.resolve_tracking_uri(cfg.tracking.uri))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (a sweep worker's covers the configs it ran)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> int:
    """Threads the BLAS/OpenMP libraries may use in this process (a sweep limits them per worker)."""
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info()), default=1)


def _record_history(recorder, plots, history: History, title: str, best_epoch, diverged_at=None) -> Optional[Path]:
    """History CSV and Figure 1 as artifacts; Figure 1 is kept next to Hydra's job log when there is one."""
    recorder.log_text(history_csv(history), "history.csv")
    figure = plots.figure_one(history.metrics, title, best_epoch=best_epoch, diverged_at=diverged_at)
    output_dir = _local_output_dir()
    with tempfile.TemporaryDirectory() as scratch:
        path = (output_dir or Path(scratch)) / "figure1.png"
        figure.savefig(path, dpi=100)
        plots.plt.close(figure)
        recorder.log_file(path)
    return path if output_dir is not None else None


def _end_with_error(recorder) -> None:
    recorder.log_text(traceback.format_exc(), "traceback.txt")
    recorder.end("error", traceback.format_exc(limit=-1).strip().splitlines()[-1])


def _task_overrides() -> Optional[list]:
    """The command line's overrides of this job, when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return None
