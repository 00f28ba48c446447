"""`run_config`: one composed config -> one trained net -> one MLflow run.

Order matters for the user: config values are checked and data is loaded (both may fail with a clear
message) before a run is created, so a typo never leaves an empty or RUNNING run behind. Once the run
exists, every way out of training (finished, stopped early, pruned, diverged, error, Ctrl-C) closes it
with its outcome.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from src.config.checks import validate
from src.config.identity import config_hash, flatten, group_hash, to_plain
from src.config.naming import run_name
from src.config.schema import FINAL_METRICS
from src.data.dataset import Dataset
from src.data.loader import load_dataset
from src.data.shared import DataShare
from src.errors import ConfigError, RunDiverged
from src.experiment.epochs import EpochEnd, SweepPruner
from src.experiment.job import SweepJob
from src.experiment.recording import (
    EXPERIMENT_NOTE,
    blas_threads,
    close_with_error,
    closing_on_failure,
    peak_rss_mb,
    record_history,
    refuse_a_second_attempt,
    run_tags,
)
from src.experiment.threads import ThreadGovernor
from src.nn.mlp import evaluate, init_params
from src.nn.optim import build_optimizer
from src.nn.train import Diverged, FitResult, fit
from src.outcomes import Outcome
from src.tracking import names
from src.tracking.store import open_store, preload, resolve_uri

log = logging.getLogger("netsweep")


@dataclass
class RunSummary:
    run_id: str
    tracking_uri: str
    metrics: dict  # final metrics: test_acc, best_val_loss, ...
    figure_path: Path | None
    experiment_id: str = ""
    outcome: Outcome = Outcome.FINISHED

    @property
    def test_acc(self) -> float:
        return self.metrics["test_acc"]

    def objective(self, name: str) -> float:
        """The final metric a sweeper optimises (the config's `objective`)."""
        return self.metrics[name]


def prepare(cfg: DictConfig, share: DataShare | None = None) -> Dataset:
    """Check the config and load its data: everything that can fail before a run is recorded."""
    validate(cfg)
    dataset = load_dataset(cfg.data, cfg.seed, share)
    if cfg.optimizer.batch_size > len(dataset.y_train):
        raise ConfigError(
            f"optimizer.batch_size={cfg.optimizer.batch_size} is larger than the {len(dataset.y_train)} "
            "training images; use a smaller batch size"
        )
    return dataset


def train(cfg: DictConfig, dataset: Dataset, on_epoch_end, on_step=None) -> FitResult:
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
        patience=cfg.patience,
        on_epoch_end=on_epoch_end,
        on_step=on_step,
    )


def thread_governor(cfg: DictConfig, dataset: Dataset) -> ThreadGovernor:
    """BLAS threads for this run: `cfg.threads`, or measured as it trains (src/experiment/threads.py)."""
    batch, hidden = cfg.optimizer.batch_size, cfg.model.hidden_size
    work = batch * hidden * (dataset.input_dim + dataset.num_classes) * 3  # forward and backward products
    steps = -(-len(dataset.y_train) // batch)
    return ThreadGovernor(blas_threads(), cfg.threads, work, steps)


def final_metrics(result: FitResult, dataset: Dataset, decay: float) -> dict:
    """Test and in-sample scores of the kept (best validation loss) parameters, plus the best epochs.

    The test set is scored with one BLAS thread, as the saved model predicts: float32 products summed in
    another order can flip a near tie, and the model's predictions on the test images must give exactly
    this test_acc."""
    with threadpool_limits(limits=1, user_api="blas"):
        test_loss, test_acc = evaluate(result.params, dataset.X_test, dataset.y_test, decay)
    insample_loss, insample_acc = evaluate(result.params, dataset.X_train, dataset.y_train, decay)
    history = result.history.metrics
    scores = (
        test_acc,
        test_loss,
        insample_acc,
        insample_loss,
        result.best_epoch,
        min(history["val_loss"]),
        max(history["val_acc"]),
        min(history["val_ce"]),
    )
    return dict(zip(FINAL_METRICS, scores))


def run_config(
    cfg: DictConfig,
    overrides: Sequence[str] | None = None,
    output_dir: Path | None = None,
    sweep_job: SweepJob | None = None,
) -> RunSummary:
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
            close_with_error(open_store(uri).run_log(sweep_job.run_id))
        raise
    preloading.join()
    store = open_store(uri)
    name = run_name(cfg, overrides or ())
    experiment_id = (
        sweep_job.experiment_id if sweep_job else store.experiment_id(cfg.tracking.experiment, EXPERIMENT_NOTE)
    )
    run = _open_run(store, cfg, dataset, name, overrides, sweep_job, experiment_id)
    log.info(f"run {run.run_id} ({name}) on {dataset.summary()}")
    with closing_on_failure(run):
        summary = _train_and_record(store, cfg, dataset, run, name, output_dir, sweep_job)
    summary.experiment_id = experiment_id
    log.info(
        f"test accuracy {summary.test_acc:.4f} (in-sample {summary.metrics['insample_acc']:.4f}, "
        f"best epoch {summary.metrics['best_epoch']})"
    )
    return summary


def _train_and_record(
    store, cfg: DictConfig, dataset: Dataset, run, name: str, output_dir: Path | None, sweep_job: SweepJob | None
) -> RunSummary:
    """Params, the resolved config and every epoch as it ends, then the final scores, Figure 1, the weights
    and the outcome."""
    title = f"{name}  ({cfg.data.name}, {cfg.optimizer.name}, batch {cfg.optimizer.batch_size})"
    if sweep_job is None:  # a sweep's parent logged them on the run it created for this config
        run.log_params(flatten(to_plain(cfg)))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), names.CONFIG)
    run.log_training_data(
        dataset.name, dataset.fingerprint, dataset.source, dataset.layout, len(dataset.y_train), dataset.num_classes
    )
    pruner = None
    if sweep_job is not None and sweep_job.prune.active:
        pruner = SweepPruner(store, sweep_job, config_hash(cfg), group_hash(cfg), cfg.epochs)
    governor = thread_governor(cfg, dataset)
    epoch_end = EpochEnd(run, cfg.epochs, pruner, publish_curve=sweep_job is not None, threads=governor)
    try:
        result = train(cfg, dataset, epoch_end, governor)
    except Diverged as stop:
        record_history(run, stop.history, title, output_dir, None, diverged_at=stop.epoch)
        run.close(Outcome.DIVERGED, str(stop))
        raise RunDiverged(f"run {run.run_id} {stop}; try a smaller optimizer.lr") from None
    except BaseException as exc:  # interrupted or failed: what was trained so far is kept
        _keep_partial_history(run, epoch_end, title, output_dir, exc)
        raise
    finally:
        governor.close()
        run.set_tags({"blas_threads": governor.used, "blas_threads_policy": governor.policy})
    return _close_trained(store, cfg, dataset, run, result, epoch_end, title, output_dir)


def _keep_partial_history(run, epoch_end: EpochEnd, title: str, output_dir: Path | None, exc: BaseException):
    """history.csv and Figure 1 of the epochs done before an interrupt or an error (never masking it)."""
    if not epoch_end.history.epochs:
        return
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        record_history(run, epoch_end.history, title, output_dir, None, stopped_at=(epoch_end.history.epochs, why))
    except Exception as failure:
        log.warning(f"netsweep: could not keep the partial history of run {run.run_id}: {failure}")


def _close_trained(
    store,
    cfg: DictConfig,
    dataset: Dataset,
    run,
    result: FitResult,
    epoch_end: EpochEnd,
    title: str,
    output_dir: Path | None,
) -> RunSummary:
    """Final scores of the kept parameters, Figure 1, the weights, and the outcome: finished (stopped early by
    its patience, or not) or pruned."""
    metrics = final_metrics(result, dataset, cfg.model.decay)
    trained = result.epochs_trained
    run.log_metrics({**metrics, "epochs_trained": trained, "peak_rss_mb": peak_rss_mb()}, step=trained)
    why = "pruned" if epoch_end.pruned else "stopped early"
    figure_path = record_history(
        run, result.history, title, output_dir, result.best_epoch, stopped_at=(trained, why) if result.stopped else None
    )
    if cfg.tracking.log_weights:
        run.log_arrays(result.params, names.WEIGHTS)
    if cfg.tracking.log_model and not epoch_end.pruned:
        run.log_model(result.params, dataset.layout, dataset.X_test_raw)
    if result.stopped and not epoch_end.pruned:
        run.set_tags({names.STOPPED_EARLY: result.stopped})
        log.info(f"stopped early at epoch {trained}: {result.stopped}")
    outcome = Outcome.PRUNED if epoch_end.pruned else Outcome.FINISHED
    run.close(outcome, epoch_end.pruned)
    return RunSummary(run.run_id, store.uri, metrics, figure_path, outcome=outcome)


def evaluate_run(store, run_id: str, cfg: DictConfig, share: DataShare | None = None) -> dict:
    """`mlflow.models.evaluate` of the run's saved model on its test images (as its data source stores them):
    per-class precision and recall and a confusion matrix, logged on the run. Kept off every sweep config's
    path: a single run, or a sweep's winner."""
    dataset = load_dataset(cfg.data, cfg.seed, share)
    metrics = store.evaluate_model(run_id, dataset.X_test_raw, dataset.y_test)
    store.run_log(run_id).set_tags({names.EVALUATED: "mlflow.models.evaluate on the test split"})
    return metrics


def _open_run(
    store, cfg: DictConfig, dataset: Dataset, name: str, overrides, sweep_job: SweepJob | None, experiment_id: str
):
    """The run this config records into: created here (in `experiment_id`), or the one a sweep created for it."""
    tags = run_tags(cfg, dataset, overrides)
    if sweep_job:
        refuse_a_second_attempt(store, sweep_job.run_id)
        return store.attach_run(sweep_job.run_id, tags)
    return store.create_run(experiment_id, name, tags)
