"""`run_config`: one composed config -> one trained net -> one MLflow run.

Order matters for the user: config values are checked and data is loaded (both may fail with a clear
message) before a run is created, so a typo never leaves an empty or RUNNING run behind. Once the run
exists, every way out of training (finished, stopped early, pruned, diverged, error, Ctrl-C) closes it
with its outcome.

The composed config is a DictConfig only up to `settings_of`, where it is checked and becomes the
schema's dataclasses (`Config`) once; what identifies it (its hashes, params and config.yaml) is worked
out from the DictConfig there too (`ConfigRecord`). Past that point a run travels as a `RunContext`.
"""

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from src import interrupts
from src.config.checks import validate
from src.config.naming import run_name
from src.config.schema import FINAL_METRICS, Config, DataConfig
from src.data.dataset import Dataset
from src.data.loader import load_dataset, share_source
from src.data.shared import DataShare
from src.errors import ConfigError, RunDiverged, RunPaused, WorkerLost, WriterLost
from src.experiment import checkpoints
from src.experiment.epochs import EpochEnd, SweepPruner
from src.experiment.job import SweepJob
from src.experiment.recording import (
    EXPERIMENT_NOTE,
    ConfigRecord,
    RunContext,
    blas_threads,
    close_with_error,
    closing_on_failure,
    peak_rss_mb,
    record_history,
    refuse_a_second_attempt,
    run_tags,
)
from src.experiment.threads import ThreadGovernor, lent_threads
from src.nn.arrays import Metrics, Params
from src.nn.backend import Backend, backend
from src.nn.mlp import evaluate, init_params
from src.nn.optim import Optimizer, build_optimizer, knobs
from src.nn.pack import Member, fit_pack
from src.nn.train import (
    Callbacks,
    Diverged,
    EpochEndHook,
    FitResult,
    History,
    Progress,
    StepHook,
    TrainingData,
    TrainSettings,
    fit,
)
from src.outcomes import Outcome
from src.tracking import names
from src.tracking.api import DatasetRecord, RunLog, RunRecord, StepMetrics, Store
from src.tracking.opening import EVALUATED_BY, evaluate_later, open_store, preload, resolve_uri

log = logging.getLogger("netsweep")


@dataclass
class RunSummary:
    run_id: str
    tracking_uri: str
    metrics: dict[str, float]  # final metrics: test_acc, best_val_loss, ...
    figure_path: Path | None
    experiment_id: str = ""
    outcome: Outcome = Outcome.FINISHED

    @property
    def test_acc(self) -> float:
        return self.metrics["test_acc"]

    def objective(self, name: str) -> float:
        """The final metric a sweeper optimises (the config's `objective`)."""
        return self.metrics[str(name)]


def settings_of(cfg: DictConfig) -> Config:
    """The composed config, checked (src/config/checks.py) and made the schema's dataclasses: what every
    layer below receives, so none of them reads the DictConfig."""
    validate(cfg)
    settings = OmegaConf.to_object(cfg)
    if not isinstance(settings, Config):
        raise TypeError(f"expected a config composed on the netsweep_config schema, got {type(settings).__name__}")
    return settings


def publish_data(data: DictConfig, share: DataShare) -> None:
    """Decode a `data` config's files once into `share`, for a sweep's workers to memory-map (its parent)."""
    settings = OmegaConf.to_object(data)
    if not isinstance(settings, DataConfig):
        raise TypeError(f"expected a data config composed on its schema, got {type(settings).__name__}")
    share_source(settings, share)


def array_backend(settings: Config) -> Backend | None:
    """The array library and device the config trains on (None: NumPy, through `fit`), or a ConfigError
    naming what is missing."""
    if settings.arrays in (None, "numpy") and settings.device in (None, "cpu"):
        return None
    try:
        return backend(settings.arrays or "numpy", settings.device)
    except (ValueError, ModuleNotFoundError) as exc:
        raise ConfigError(f"arrays={settings.arrays} device={settings.device}: {exc}") from None


def load_data(settings: Config, share: DataShare | None = None) -> Dataset:
    """The config's data, split with its seed: the last thing that can fail before a run is recorded."""
    dataset = load_dataset(settings.data, settings.seed, share)
    batch_size = settings.optimizer.batch_size
    if batch_size > len(dataset.y_train):
        raise ConfigError(
            f"optimizer.batch_size={batch_size} is larger than the {len(dataset.y_train)} "
            "training images; use a smaller batch size"
        )
    return dataset


def optimizer_for(settings: Config, params: Params) -> Optimizer:
    """The config's optimizer for `params`, owning the model's weight decay."""
    name = str(settings.optimizer.name)
    own = {key: value for key, value in dataclasses.asdict(settings.optimizer).items() if key in knobs(name)}
    return build_optimizer(name, params, lr=settings.optimizer.lr, decay=settings.model.decay, **own)


@dataclass
class Fit:
    """A fit of the config's net, ready to run or to go on: its parameters and optimizer (trained in place),
    where it stands, its loop settings and what it trains on."""

    params: Params
    optimizer: Optimizer
    progress: Progress
    loop: TrainSettings
    data: TrainingData

    def run(self, callbacks: Callbacks) -> FitResult:
        return fit(
            self.params, self.data, optimizer=self.optimizer, settings=self.loop, progress=self.progress,
            callbacks=callbacks,
        )  # fmt: skip


def new_fit(settings: Config, dataset: Dataset, saved: checkpoints.Checkpoint | None = None) -> Fit:
    """The net `settings` describe, on `dataset`, seeded so the same config gives the same metrics; with
    `saved`, where that checkpoint of it stood (the rest of the fit goes as it would have gone)."""
    init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2))
    model = settings.model
    params = init_params(
        dataset.input_dim,
        model.hidden_size,
        dataset.num_classes,
        init_rng,
        dtype=np.dtype(model.dtype.value),
        scheme=model.init.value,
    )
    optimizer = optimizer_for(settings, params)
    progress = Progress.start(shuffle_rng) if saved is None else checkpoints.restore(saved, params, optimizer)
    loop = TrainSettings(
        batch_size=settings.optimizer.batch_size,
        epochs=settings.epochs,
        divergence_factor=settings.divergence_factor,
        patience=settings.patience,
        schedule=None if settings.optimizer.schedule is None else str(settings.optimizer.schedule),
        lr_final=settings.optimizer.lr_final or 0.0,
    )
    data = TrainingData(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    return Fit(params, optimizer, progress, loop, data)


def thread_governor(settings: Config, dataset: Dataset) -> ThreadGovernor:
    """BLAS threads for this run: the config's `threads`, or measured as it trains (src/experiment/threads.py)."""
    batch, hidden = settings.optimizer.batch_size, settings.model.hidden_size
    work = batch * hidden * (dataset.input_dim + dataset.num_classes) * 3  # forward and backward products
    steps = -(-len(dataset.y_train) // batch)
    return ThreadGovernor(blas_threads(), settings.threads, work, steps, lent=lent_threads())


def final_metrics(result: FitResult, dataset: Dataset, decay: float) -> dict[str, float]:
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
    return dict(zip(FINAL_METRICS, scores, strict=True))


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
    ctx = open_config(cfg, overrides, output_dir, sweep_job)
    with closing_on_failure(ctx.run):
        summary = _train_and_record(ctx)
    summary.experiment_id = ctx.experiment_id or ctx.store.experiment_id(ctx.settings.tracking.experiment)
    log_result(summary)
    return summary


def log_result(summary: RunSummary) -> None:
    """The closing line of a trained run's log."""
    log.info(
        f"test accuracy {summary.test_acc:.4f} (in-sample {summary.metrics['insample_acc']:.4f}, "
        f"best epoch {summary.metrics['best_epoch']})"
    )


def open_config(
    cfg: DictConfig,
    overrides: Sequence[str] | None = None,
    output_dir: Path | None = None,
    sweep_job: SweepJob | None = None,
) -> RunContext:
    """Check `cfg`, load its data and open its run (see `run_config`): everything a run needs to train.
    Raises ConfigError/DataError before any run exists (a sweep's run is then closed with an error)."""
    preloading = preload()  # ~1 s of imports, overlapped with data loading
    uri = sweep_job.tracking_uri if sweep_job else resolve_uri(cfg.tracking.uri)
    try:
        settings = settings_of(cfg)
        array_backend(settings)  # a library that is missing is refused before any run exists
        dataset = load_data(settings, sweep_job.data_share if sweep_job else None)
    except Exception:
        if sweep_job:  # the sweep created this run already: close it rather than leave it SCHEDULED
            preloading.join()
            close_with_error(open_store(uri).run_log(sweep_job.run_id))
        raise
    preloading.join()
    store: Store = open_store(uri)
    record, name = ConfigRecord.of(cfg), run_name(cfg, overrides or ())
    folder = checkpoints.folder_for(settings.tracking.checkpoint_dir, uri)
    tags = run_tags(record, dataset, overrides)
    if sweep_job is None and not checkpoints.any_of(folder, record.config_hash):
        # nothing to continue: a new run, which a store opened by a writer process creates while this one trains
        run = store.create_run_in(settings.tracking.experiment, EXPERIMENT_NOTE, name, tags)
        log.info(f"new run ({name}) on {dataset.summary()}")
        return RunContext(store, run, settings, record, dataset, name, output_dir, None, folder, fresh=True)
    experiment_id = (
        sweep_job.experiment_id if sweep_job else store.experiment_id(settings.tracking.experiment, EXPERIMENT_NOTE)
    )
    run = _open_run(store, RunRequest(tags, name, experiment_id, record.config_hash, folder), sweep_job)
    log.info(f"run {run.run_id} ({name}) on {dataset.summary()}")
    return RunContext(store, run, settings, record, dataset, name, output_dir, sweep_job, folder, experiment_id)


@dataclass(frozen=True)
class RunRequest:
    """What a config asks of the store before it trains: a run with these tags and name in this experiment,
    or the killed run of the same config (`config_hash`) whose checkpoint in `checkpoints` it continues."""

    tags: dict[str, Any]
    name: str
    experiment_id: str
    config_hash: str
    checkpoints: Path


def _open_run(store: Store, request: RunRequest, sweep_job: SweepJob | None) -> RunLog:
    """The run this config records into: the one a sweep created for it (a sweep's killed config continues
    in its run), a killed run of the same config that left a checkpoint, or a new run."""
    if sweep_job:
        saved = checkpoints.path_for(request.checkpoints, sweep_job.run_id)
        if checkpoints.load(saved, request.config_hash) is None:  # nothing to continue from
            refuse_a_second_attempt(store, sweep_job.run_id)
            if store.epochs_logged(sweep_job.run_id):  # it paused at a rung, but its checkpoint is not here
                reason = (
                    f"its checkpoint {saved} cannot be read on this worker; set tracking.checkpoint_dir to a "
                    "folder every worker shares"
                )
                store.run_log(sweep_job.run_id).close(Outcome.KILLED, reason)
                raise WorkerLost(f"run {sweep_job.run_id}: {reason}")
        return store.attach_run(sweep_job.run_id, request.tags)
    earlier = store.runs(
        [request.experiment_id], config_hash=request.config_hash, outcomes=[Outcome.KILLED, Outcome.RUNNING]
    )
    for candidate in sorted(earlier, key=lambda r: r.start_time_ms, reverse=True):
        if names.SWEEP_ID in candidate.tags or (candidate.outcome == Outcome.RUNNING and not abandoned(candidate)):
            continue  # a sweep's config (its sweep continues it), or a run that may still be training
        if checkpoints.load(checkpoints.path_for(request.checkpoints, candidate.run_id), request.config_hash):
            log.info(f"continuing run {candidate.run_id}, killed before it ended, from its checkpoint")
            return store.attach_run(candidate.run_id, request.tags)
    return store.create_run(request.experiment_id, request.name, request.tags)


def abandoned(run: RunRecord) -> bool:
    """A RUNNING run whose process is gone (killed with SIGKILL, its machine restarted): it ran on this
    machine and its pid is dead. A run of another machine cannot be checked, and is left alone."""
    pid = run.tags.get("worker_pid", "")
    if run.tags.get("host") != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _epoch_end(ctx: RunContext, governor: ThreadGovernor, history: History, logged: int) -> EpochEnd:
    """What happens as each epoch ends: logged (unless the run holds it already), printed, and in a sweep
    that prunes, judged."""
    job, epochs = ctx.sweep_job, ctx.settings.epochs
    pruner = None
    if job is not None and job.prune.active:
        pruner = SweepPruner(ctx.store, job, ctx.record.config_hash, ctx.record.group_hash, epochs)
    return EpochEnd(ctx.run, epochs, history, pruner, job is not None, governor, logged)


def _saving(ctx: RunContext, training: Fit) -> checkpoints.Saver | None:
    """The `on_progress` of a run's fit: its state after every epoch, written to its checkpoint at most
    once a second (src/experiment/checkpoints.py) and when the fit is interrupted."""
    folder = ctx.checkpoints
    if folder is None:
        return None
    where = lambda: checkpoints.path_for(folder, ctx.run.run_id)  # noqa: E731 - a new run's id may come later
    return checkpoints.Saver(where, training.params, training.optimizer, ctx.record.config_hash)


@dataclass
class Pause:
    """A sweep's synchronous halving asks this run to stop at the rung `epoch` and wait there: its fit
    stops after that epoch (unless it ends there anyway: its patience, its pruner), its whole state goes to
    its checkpoint, and the run is SCHEDULED again until the sweep has decided the rung for every config."""

    epoch: int
    training: Fit
    reached: bool = False

    def reached_already(self) -> bool:
        """Its checkpoint is at the rung or past it (a rerun of the sweep): it waits without training."""
        return self.training.progress.epochs_done >= self.epoch

    def watch(self, on_epoch_end: EpochEndHook) -> EpochEndHook:
        progress, loop = self.training.progress, self.training.loop

        def hook(epoch: int, row: Metrics) -> str | None:
            reason = on_epoch_end(epoch, row)
            if reason or epoch < self.epoch or loop.out_of_patience(epoch, progress.best_epoch):
                return reason
            self.reached = True
            return f"paused at epoch {epoch}"

        return hook

    def wait(self, ctx: RunContext) -> None:
        """Write the checkpoint, mark the run paused and raise RunPaused (the sweep reads it as `paused`)."""
        training, epochs_done = self.training, self.training.progress.epochs_done
        if ctx.checkpoint is not None and self.reached:
            state = checkpoints.snapshot(training.params, training.optimizer, training.progress, ctx.record.config_hash)
            checkpoints.save(ctx.checkpoint, state)
        ctx.run.reschedule()
        ctx.run.set_tags({names.OUTCOME: Outcome.PAUSED.value, names.PAUSED_AT: epochs_done})
        log.info(f"paused at epoch {epochs_done}: waiting for the sweep to decide the rung")
        raise RunPaused(f"run {ctx.run.run_id} paused at epoch {epochs_done}, waiting for the rung's decision")


@dataclass
class Begun:
    """A run ready to train: its fit, what watches each epoch, the thread governor and, when its sweep halves
    synchronously, where it pauses. A pack (src/experiment/packs.py) trains several of these as one."""

    ctx: RunContext
    training: Fit
    epoch_end: EpochEnd
    governor: ThreadGovernor
    pause: Pause | None
    saver: checkpoints.Saver | None = None

    def callbacks(self) -> Callbacks:
        watch = self.pause.watch(self.epoch_end) if self.pause is not None else self.epoch_end
        return Callbacks(on_epoch_end=watch, on_step=_stoppable(self.governor), on_progress=self.saver)


def begin(ctx: RunContext) -> Begun | RunSummary:
    """Record what a run records before its first epoch (unless it continues from its checkpoint) and build
    its fit; a run its sweep pruned at a rung is closed here (its summary returned), and one already at the
    rung it is to pause at pauses (RunPaused)."""
    run, dataset = ctx.run, ctx.dataset
    saved = None if ctx.fresh else checkpoints.load(ctx.checkpoint, ctx.record.config_hash)
    if saved is None:
        _record_inputs(ctx)
    training = new_fit(ctx.settings, dataset, saved)
    logged = 0
    if saved is not None:
        logged = _catch_up(ctx, training.progress.history, ctx.store.epochs_logged(run.run_id))
        log.info(f"continuing from epoch {training.progress.epochs_done} (checkpoint {ctx.checkpoint})")
    governor = thread_governor(ctx.settings, dataset)
    epoch_end = _epoch_end(ctx, governor, training.progress.history, logged)
    job = ctx.sweep_job
    if job is not None and job.prune_now:  # its sweep stopped it at the rung it waited at
        governor.close()
        return _close_pruned_at_rung(ctx, training, epoch_end, job.prune_now)
    pause = Pause(job.pause_at, training) if job is not None and job.pause_at else None
    if pause is not None and pause.reached_already():
        governor.close()
        pause.wait(ctx)
    return Begun(ctx, training, epoch_end, governor, pause, _saving(ctx, training))


FitOutcome = FitResult | Diverged | BaseException  # how a fit came back: its result, or what it raised


def finish(begun: Begun, outcome: FitOutcome) -> RunSummary:
    """Close the run as its fit came back: finished or pruned (final scores, Figure 1, the weights), paused
    at its rung (RunPaused), diverged (RunDiverged), or interrupted or failed (the exception, re-raised, after
    the history trained so far was kept; the checkpoint stays only for an interrupt)."""
    ctx, run, governor = begun.ctx, begun.ctx.run, begun.governor
    try:
        outcome = _write_pending_epochs(begun.epoch_end, outcome)
        if isinstance(outcome, Diverged):
            record_history(ctx, outcome.history, diverged_at=outcome.epoch)
            checkpoints.remove(ctx.checkpoint)
            run.close(Outcome.DIVERGED, str(outcome))
            raise RunDiverged(f"run {run.run_id} {outcome}; try a smaller optimizer.lr") from None
        if isinstance(outcome, BaseException):  # interrupted or failed: what was trained so far is kept
            if isinstance(outcome, (KeyboardInterrupt, WriterLost)):  # killed, or its records could not be
                _write_last_checkpoint(begun)  # written: the next attempt continues from the checkpoint
            else:
                checkpoints.remove(ctx.checkpoint)
            _keep_partial_history(ctx, begun.epoch_end, outcome)
            raise outcome
    finally:
        governor.close()
        run.set_tags({"blas_threads": governor.used, "blas_threads_policy": governor.policy})
    if begun.pause is not None and begun.pause.reached:
        begun.pause.wait(ctx)
    return _close_trained(ctx, outcome, begun.epoch_end)


def _train_and_record(ctx: RunContext) -> RunSummary:
    """Params, the resolved config and every epoch as it ends, then the final scores, Figure 1, the weights
    and the outcome."""
    begun = begin(ctx)
    if isinstance(begun, RunSummary):
        return begun
    outcome: FitOutcome
    arrays = array_backend(ctx.settings)
    try:
        if arrays is None:
            outcome = begun.training.run(begun.callbacks())
        else:  # another array library: a pack of one, the same code path as packs
            callbacks = begun.callbacks()
            member = Member(begun.training.params, begun.training.optimizer, begun.training.progress, callbacks)
            (outcome,) = fit_pack(
                begun.training.data,
                [dataclasses.replace(member, callbacks=dataclasses.replace(callbacks, on_step=None))],
                settings=begun.training.loop,
                backend=arrays,
                on_step=callbacks.on_step,
            )
    except BaseException as exc:  # noqa: B036 - every way out of training closes the run (see `finish`)
        outcome = exc
    return finish(begun, outcome)


def _close_pruned_at_rung(ctx: RunContext, training: Fit, epoch_end: EpochEnd, reason: str) -> RunSummary:
    """A run its sweep pruned while it waited at a rung: closed, from its checkpoint, as a run its pruner
    stopped at that epoch is (final scores of its best epoch so far, Figure 1, history)."""
    progress = training.progress
    if not progress.epochs_done:
        raise RuntimeError(f"run {ctx.run.run_id} was pruned at a rung but has no checkpoint to close it from")
    epoch_end.pruned = reason
    ctx.run.set_tags({names.PRUNED: reason})
    log.info(f"pruned at epoch {progress.epochs_done}: {reason}")
    result = FitResult(progress.best_params, progress.best_epoch, progress.history, reason)
    return _close_trained(ctx, result, epoch_end)


def _stoppable(governor: ThreadGovernor) -> StepHook:
    """The fit's `on_step`: the governor's pacing, and a stop asked for by the worker's process (its SIGTERM)."""

    def on_step(epoch: int, step: int) -> None:
        interrupts.check_stop()
        governor(epoch, step)

    return on_step


def _record_inputs(ctx: RunContext) -> None:
    """What a run records before its first epoch: its params, its resolved config and its training data."""
    run, dataset = ctx.run, ctx.dataset
    if ctx.sweep_job is None:  # a sweep's parent logged them on the run it created for this config
        run.log_params(ctx.record.params)
    run.log_text(ctx.record.yaml, names.CONFIG)
    run.log_training_data(
        DatasetRecord(
            dataset.name, dataset.fingerprint, dataset.source, dataset.layout, len(dataset.y_train),
            dataset.num_classes,
        )
    )  # fmt: skip


def _write_pending_epochs(epoch_end: EpochEnd, outcome: FitOutcome) -> FitOutcome:
    """The epochs whose metrics still wait, written before anything else closes the run; returns how the fit
    ended, which is the write's failure when it had ended well. After an interrupt or an error, a failing
    write is said, never masking what stopped the fit."""
    try:
        epoch_end.flush()
    except Exception as failure:
        if not isinstance(outcome, BaseException):
            return failure
        log.warning(f"netsweep: could not write the last epochs' metrics of run {epoch_end.run.run_id}: {failure}")
    return outcome


def _catch_up(ctx: RunContext, history: History, logged: int) -> int:
    """An attempt continued from a checkpoint writes first the epochs its checkpoint holds but the run does not
    (the last ones before a SIGKILL, which were waiting to be written); returns the epochs the run holds now."""
    rows = history.rows()[logged:]
    if rows:
        now = int(time.time() * 1000)
        ctx.run.log_steps([StepMetrics(int(row.pop("epoch")), row, now) for row in rows])
        log.info(f"wrote epochs {logged + 1}-{history.epochs} from the checkpoint (unwritten when it stopped)")
    return max(logged, history.epochs)


def _write_last_checkpoint(begun: Begun) -> None:
    """An interrupted run's checkpoint of its last epoch, when it was held back (never masking the interrupt)."""
    if begun.saver is None:
        return
    try:
        begun.saver.flush()
    except Exception as failure:
        log.warning(f"netsweep: could not write the checkpoint of run {begun.ctx.run.run_id}: {failure}")


def _keep_partial_history(ctx: RunContext, epoch_end: EpochEnd, exc: BaseException) -> None:
    """history.csv and Figure 1 of the epochs done before an interrupt or an error (never masking it)."""
    if not epoch_end.history.epochs:
        return
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        record_history(ctx, epoch_end.history, stopped_at=(epoch_end.history.epochs, why))
    except WriterLost:  # the command's error says so
        pass
    except Exception as failure:
        log.warning(f"netsweep: could not keep the partial history of run {ctx.run.run_id}: {failure}")


def _close_trained(ctx: RunContext, result: FitResult, epoch_end: EpochEnd) -> RunSummary:
    """Final scores of the kept parameters, Figure 1, the weights, and the outcome: finished (stopped early by
    its patience, or not) or pruned."""
    run, tracking = ctx.run, ctx.settings.tracking
    metrics = final_metrics(result, ctx.dataset, ctx.settings.model.decay)
    trained = result.epochs_trained
    run.log_metrics({**metrics, "epochs_trained": trained, "peak_rss_mb": peak_rss_mb()}, step=trained)
    why = "pruned" if epoch_end.pruned else "stopped early"
    stopped_at = (trained, why) if result.stopped else None
    figure_path = record_history(ctx, result.history, best_epoch=result.best_epoch, stopped_at=stopped_at)
    if tracking.log_weights:
        run.log_arrays(result.params, names.WEIGHTS)
    if tracking.log_model and not epoch_end.pruned:
        run.log_model(result.params, ctx.dataset.layout, ctx.dataset.X_test_raw)
    if result.stopped and not epoch_end.pruned:
        run.set_tags({names.STOPPED_EARLY: result.stopped})
        log.info(f"stopped early at epoch {trained}: {result.stopped}")
    outcome = Outcome.PRUNED if epoch_end.pruned else Outcome.FINISHED
    checkpoints.remove(ctx.checkpoint)  # first: a run that ended is never continued
    run.close(outcome, epoch_end.pruned)
    return RunSummary(run.run_id, ctx.store.uri, metrics, figure_path, outcome=outcome)


def evaluate_run(store: Store, run_id: str, cfg: DictConfig, share: DataShare | None = None) -> dict[str, float]:
    """`mlflow.models.evaluate` of the run's saved model on its test images (as its data source stores them):
    per-class precision and recall and a confusion matrix, logged on the run. Kept off every sweep config's
    path: a single run, or a sweep's winner."""
    settings = settings_of(cfg)
    dataset = load_dataset(settings.data, settings.seed, share)
    metrics = store.evaluate_model(run_id, dataset.X_test_raw, dataset.y_test, _class_names(settings))
    store.run_log(run_id).set_tags({names.EVALUATED: EVALUATED_BY})
    return metrics


def evaluate_in_background(
    store_uri: str, run_id: str, cfg: DictConfig, log: Path | None = None, share: DataShare | None = None
) -> None:
    """`evaluate_run` in a process of its own that outlives this one (src/tracking/opening.py): the run gets
    per_class_metrics.csv, confusion_matrix.png and its metrics, then the tag names.EVALUATED; a run without
    the tag has no evaluation (or none that finished)."""
    settings = settings_of(cfg)
    dataset = load_dataset(settings.data, settings.seed, share)
    evaluate_later(store_uri, run_id, dataset.X_test_raw, dataset.y_test, log, _class_names(settings))


def _class_names(settings: Config) -> tuple[str, ...]:
    """The names of the data's classes, when it has some (Fashion-MNIST), for the confusion matrix."""
    return tuple(names.CLASS_NAMES.get(str(settings.data.name), ()))
