"""One composed config -> one trained net -> one tracked run. Used by single runs and by every sweep job.

Order matters for the user: config values are checked and data is loaded (both may fail with a clear
message) before a run is created, so a typo never leaves an empty or RUNNING run behind. Once the run
exists, every way out of training (finished, diverged, error, Ctrl-C) closes it with its outcome.
"""

import contextlib
import contextvars
import logging
import os
import resource
import socket
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_info

from src import plots
from src.config.checks import validate
from src.config.identity import config_hash, flatten, group_hash, to_plain
from src.config.naming import run_name
from src.data.dataset import Dataset
from src.data.loader import load_dataset
from src.data.shared import DataShare
from src.errors import ConfigError, RunDiverged, WorkerLost
from src.nn.mlp import evaluate, init_params
from src.nn.optim import build_optimizer
from src.nn.train import FINAL_METRICS, Diverged, FitResult, History, fit
from src.outcomes import Outcome
from src.tracking import names
from src.tracking.provenance import git_tags
from src.tracking.store import SQLITE_PREFIX, is_local_file, open_store, preload, resolve_uri

log = logging.getLogger("netsweep")
EXPERIMENT_NOTE = """\
netsweep runs of the assignment's net: one hidden ReLU layer, a softmax output, trained by minibatch SGD \
(or momentum, Adam) on the cross-entropy plus weight decay c (||W1||^2 + ||W2||^2).

- A run is one config. Params: the resolved config. Per epoch (step = epoch): train_loss, train_acc, \
val_loss, val_acc. Final: test_acc, best_val_acc, ... Artifacts: figure1.png, history.csv, weights.npz, \
config.yaml. Tag `outcome`: finished, diverged, pruned, error or killed.
- A sweep is a parent run "sweep <id> (N configs)" (tag netsweep.role=sweep) with one child per config: \
expand it in the runs table. Its report/ artifacts hold curves.png, heatmap.png and the leaderboard; its \
winner.* tags name the best config.
- Made by `python -m src.run` (a run) and `python -m src.run -m ...` (a sweep); \
`python -m src.report <sweep id>` rebuilds a sweep's comparison.
"""


@dataclass(frozen=True)
class SweepJob:
    """What a sweep's parent hands one of its jobs: the run it created for it and the data it decoded.

    The sweep's worker enters it around the job (`with job:`), and the task function passes
    `current_sweep_job()` on to `run_config`.
    """

    run_id: str
    tracking_uri: str
    data_share: Optional[DataShare] = None
    _token: list = field(default_factory=list, compare=False, repr=False)

    def __enter__(self) -> "SweepJob":
        self._token.append(_ACTIVE_JOB.set(self))
        return self

    def __exit__(self, *exc_info) -> None:
        _ACTIVE_JOB.reset(self._token.pop())


_ACTIVE_JOB: contextvars.ContextVar[Optional[SweepJob]] = contextvars.ContextVar("netsweep_sweep_job", default=None)


def current_sweep_job() -> Optional[SweepJob]:
    """The sweep job this thread is running, if any."""
    return _ACTIVE_JOB.get()


@dataclass
class RunSummary:
    run_id: str
    tracking_uri: str
    metrics: dict  # final metrics: test_acc, best_val_loss, ...
    figure_path: Optional[Path]
    experiment_id: str = ""

    @property
    def test_acc(self) -> float:
        return self.metrics["test_acc"]

    @property
    def best_val_loss(self) -> float:
        return self.metrics["best_val_loss"]

    def objective(self, name: str) -> float:
        """The final metric a sweeper optimises (the config's `objective`)."""
        return self.metrics[name]


def prepare(cfg: DictConfig, share: Optional[DataShare] = None) -> Dataset:
    """Check the config and load its data: everything that can fail before a run is recorded."""
    validate(cfg)
    dataset = load_dataset(cfg.data, cfg.seed, share)
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
        params, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val,
        optimizer=optimizer, decay=cfg.model.decay, batch_size=cfg.optimizer.batch_size, epochs=cfg.epochs,
        rng=shuffle_rng, divergence_factor=cfg.divergence_factor, on_epoch_end=on_epoch_end,
    )


def final_metrics(result: FitResult, dataset: Dataset, decay: float) -> dict:
    """Test and in-sample scores of the kept (best validation loss) parameters, plus the best epochs."""
    test_loss, test_acc = evaluate(result.params, dataset.X_test, dataset.y_test, decay)
    insample_loss, insample_acc = evaluate(result.params, dataset.X_train, dataset.y_train, decay)
    history = result.history.metrics
    scores = (test_acc, test_loss, insample_acc, insample_loss, result.best_epoch, min(history["val_loss"]),
              max(history["val_acc"]))
    return dict(zip(FINAL_METRICS, scores))


def history_csv(history: History) -> str:
    rows = history.rows()
    if not rows:
        return "epoch\n"
    header = ",".join(rows[0])
    return "\n".join([header] + [",".join(f"{value:.9g}" for value in row.values()) for row in rows]) + "\n"


def run_config(cfg: DictConfig, overrides: Optional[Sequence[str]] = None, output_dir: Optional[Path] = None,
               sweep_job: Optional[SweepJob] = None) -> RunSummary:
    """Train the net `cfg` describes and record it as one MLflow run.

    `overrides` are the command line's (they name the run), `output_dir` is where Figure 1 is also kept,
    `sweep_job` the run a sweep created for this config. Raises ConfigError/DataError before any run
    exists; RunDiverged, KeyboardInterrupt or the original exception after the run was closed with
    outcome diverged, killed or error.
    """
    preloading = preload()  # ~1 s of imports, overlapped with data loading
    uri = sweep_job.tracking_uri if sweep_job else resolve_uri(cfg.tracking.uri)
    try:
        dataset = prepare(cfg, sweep_job.data_share if sweep_job else None)
    except Exception:
        if sweep_job:  # the sweep created this run already: close it rather than leave it SCHEDULED
            preloading.join()
            _close_with_error(open_store(uri).run_log(sweep_job.run_id))
        raise
    preloading.join()
    store = open_store(uri)
    name = run_name(cfg, overrides or ())
    run = _open_run(store, cfg, dataset, name, overrides, sweep_job)
    log.info(f"run {run.run_id} ({name}) on {dataset.summary()}")
    with _closing_on_failure(run):
        result = _train_and_record(cfg, dataset, run, _figure_title(cfg, name))
        metrics = final_metrics(result, dataset, cfg.model.decay)
        run.log_metrics({**metrics, "peak_rss_mb": peak_rss_mb()}, step=cfg.epochs)
        figure_path = _record_history(run, result.history, _figure_title(cfg, name), output_dir, result.best_epoch)
        if cfg.tracking.log_weights:
            run.log_arrays(result.params, names.WEIGHTS)
        run.close(Outcome.FINISHED)
    log.info(
        f"test accuracy {metrics['test_acc']:.4f} (in-sample {metrics['insample_acc']:.4f}, "
        f"best epoch {result.best_epoch})"
    )
    return RunSummary(run.run_id, uri, metrics, figure_path, store.run(run.run_id).experiment_id)


def _figure_title(cfg: DictConfig, name: str) -> str:
    return f"{name}  ({cfg.data.name}, {cfg.optimizer.name}, batch {cfg.optimizer.batch_size})"


def _train_and_record(cfg: DictConfig, dataset: Dataset, run, title: str) -> FitResult:
    """Params, the resolved config and every epoch as it ends; a diverged run is closed here."""
    run.log_params(flatten(to_plain(cfg)))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), names.CONFIG)
    try:
        return train(cfg, dataset, _epoch_logger(run, cfg.epochs))
    except Diverged as stop:
        _record_history(run, stop.history, title, None, None, diverged_at=stop.epoch)
        run.close(Outcome.DIVERGED, str(stop))
        raise RunDiverged(f"run {run.run_id} {stop}; try a smaller optimizer.lr") from None


def _open_run(store, cfg: DictConfig, dataset: Dataset, name: str, overrides, sweep_job: Optional[SweepJob]):
    """The run this config records into: created here, or the one a sweep created for it."""
    tags = {
        names.CONFIG_HASH: config_hash(cfg),
        names.GROUP_HASH: group_hash(cfg),
        names.DATA_FINGERPRINT: dataset.fingerprint,
        "data": dataset.summary(),
        names.OUTCOME: Outcome.RUNNING.value,
        "blas_threads": blas_threads(),
        "host": socket.gethostname(),
        "worker_pid": os.getpid(),
        **git_tags(),
    }
    if overrides is not None:
        tags[names.OVERRIDES] = " ".join(overrides)
    if sweep_job:
        _refuse_a_second_attempt(store, sweep_job.run_id)
        return store.attach_run(sweep_job.run_id, tags)
    return store.create_run(store.experiment_id(cfg.tracking.experiment, EXPERIMENT_NOTE), name, tags)


def _epoch_logger(run, epochs: int):
    """Log each epoch to MLflow as it ends, and print its line."""
    width = len(str(epochs))

    def on_epoch_end(epoch: int, row: dict) -> None:
        run.log_metrics(row, step=epoch)
        log.info(
            f"epoch {epoch:>{width}}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
            f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  {row['epoch_time_s']:.2f}s"
        )

    return on_epoch_end


@contextlib.contextmanager
def _closing_on_failure(run):
    """Whatever interrupts the run ends it: KILLED on Ctrl-C or SIGTERM, FAILED with a traceback on an error."""
    try:
        yield
    except RunDiverged:
        raise  # already recorded
    except KeyboardInterrupt:
        run.close(Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException:
        _close_with_error(run)
        raise


def _refuse_a_second_attempt(store, run_id: str) -> None:
    """A distributed engine re-runs a task whose worker died. Training again into the same run would log
    every epoch twice, so the lost attempt ends `killed` and a rerun of the sweep trains the config anew."""
    phase = store.phase(run_id)
    if phase == Outcome.SCHEDULED:
        return
    reason = "its worker was lost while it trained; rerun the sweep to train it again"
    if phase == Outcome.RUNNING:
        store.run_log(run_id).close(Outcome.KILLED, reason)
    raise WorkerLost(f"run {run_id}: {reason}")


def prepare_worker(uri: str) -> None:
    """What a sweep worker does before its first job: import what a run needs (mlflow included), load
    matplotlib's fonts, and connect to the store when it exists (creating one is the sweep parent's job)."""
    plots.plt.close(plots.figure_one({k: [1.0] for k in ("train_loss", "val_loss", "train_acc", "val_acc")}, ""))
    if not is_local_file(uri) or Path(uri.removeprefix(SQLITE_PREFIX)).is_file():
        open_store(uri)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (a sweep worker's covers the configs it ran)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> int:
    """Threads the BLAS/OpenMP libraries may use in this process (a sweep limits them per worker)."""
    return max((pool["num_threads"] for pool in threadpool_info()), default=1)


def _record_history(run, history: History, title: str, output_dir: Optional[Path], best_epoch,
                    diverged_at=None) -> Optional[Path]:
    """History CSV and Figure 1 as artifacts; Figure 1 is also kept in `output_dir` when there is one."""
    run.log_text(history_csv(history), names.HISTORY)
    figure = plots.figure_one(history.metrics, title, best_epoch=best_epoch, diverged_at=diverged_at)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(output_dir or scratch) / names.FIGURE_ONE
        figure.savefig(path, dpi=100)
        plots.plt.close(figure)
        run.log_file(path)
    return path if output_dir is not None else None


def _close_with_error(run) -> None:
    run.log_text(traceback.format_exc(), names.TRACEBACK)
    run.close(Outcome.ERROR, traceback.format_exc(limit=-1).strip().splitlines()[-1])
