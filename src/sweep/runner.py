"""`SweepRunner`: everything a sweep does in the parent process, from the first batch to the last.

Hydra's sweeper calls `launch` once per batch (a grid is one batch; Optuna asks for a few trials at a
time). The runner plans each batch (src/sweep/plan.py), lets the app check and record it
(src/sweep/apps.py), dispatches what is left to train to its worker pool (src/sweep/dispatch.py) and
reports progress across batches. `finish` ends the sweep once: after the batch that completes the number
of configs the sweeper announced, or when Hydra's multirun ends, or when the command is interrupted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from src import interrupts
from src.config.naming import swept_keys
from src.errors import ConfigError, Interrupted, SweepInterrupted
from src.outcomes import Outcome
from src.sweep.apps import HydraApp, NetsweepApp, is_netsweep_config
from src.sweep.dispatch import Task, dispatch
from src.sweep.plan import Composer, Job
from src.sweep.policy import Pool, PoolFactory, SweepApp
from src.sweep.pool import WorkerPool
from src.sweep.progress import Progress, interrupted_text
from src.sweep.settings import Backend, LauncherSettings
from src.sweep.slots import WorkerDied
from src.tracking import remote

log = logging.getLogger("netsweep.sweep")
# Libraries that talk on the console while a sweep runs; the sweep's own lines say what matters (the
# Optuna sweeper's result is also in the sweep folder's optimization_results.yaml).
CHATTY_LOGGERS = ("optuna", "hydra_plugins.hydra_optuna_sweeper", "alembic", "mlflow", "distributed")


def announced_total(config: DictConfig) -> int | None:
    """How many configs the sweeper says it will run, when its config says (Optuna's n_trials)."""
    trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
    return int(trials) if isinstance(trials, int) else None


class SweepRunner:
    def __init__(
        self,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
        settings: LauncherSettings,
        *,
        app: SweepApp | None = None,
        pool_factory: PoolFactory = WorkerPool,
    ):
        """`settings` were checked as they were made (LauncherSettings.__post_init__)."""
        self.hydra_context, self.task_function, self.config, self.settings = (
            hydra_context,
            task_function,
            config,
            settings,
        )
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        netsweep_app = is_netsweep_config(config)
        if settings.mlflow and not netsweep_app:
            raise ConfigError(
                "hydra.launcher.mlflow=true needs netsweep's own app (python -m src.run): another "
                "Hydra app's jobs do not record into MLflow runs; leave hydra.launcher.mlflow unset"
            )
        tracked = settings.mlflow if settings.mlflow is not None else netsweep_app
        self.app: SweepApp = app or (NetsweepApp(config, settings) if tracked else HydraApp(config, settings))
        self.pool_factory = pool_factory
        self.total = announced_total(config)
        self.composer: Composer | None = None
        self.pool: Pool | None = None
        self.progress: Progress | None = None
        self.done = 0
        self.finished = False

    def expect(self, total: int) -> None:
        """The sweeper knows how many configs the whole sweep has."""
        self.total = total

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        remote.stop()  # a config file set hydra.mode=MULTIRUN: the writer started for a single run is not a sweep's
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        os.makedirs(str(self.config.hydra.sweep.dir), exist_ok=True)
        composer = self.composer = self.composer or Composer(self.hydra_context.config_loader, self.config)
        jobs = [
            Job(initial_job_idx + i, list(o), composer.compose(o, initial_job_idx + i))
            for i, o in enumerate(job_overrides)
        ]
        self.app.plan(jobs)  # a bad value stops the sweep here, before any run exists
        if self.pool is None and self.settings.backend == Backend.loky:
            self._open_pool(len(jobs))  # local workers start (and import) while the parent sets up the sweep
        progress = self.progress or self._start(jobs, composer)
        self.app.prepare(jobs)
        progress.batch(jobs)
        self.done += len(jobs)
        try:
            self._train(jobs, progress)
        except KeyboardInterrupt as exc:  # the runs are closed: say what the interrupt left
            if isinstance(exc, SweepInterrupted):
                raise
            raise SweepInterrupted(interrupted_text(self.app.jobs)) from exc
        return [self.app.job_return(job) for job in jobs]

    def _train(self, jobs: list[Job], progress: Progress) -> None:
        """Train the batch's jobs, close what they left open and, after the last batch (or an interrupt), end
        the sweep."""
        interrupted = False
        try:
            signals = interrupts.received()
            self._run([j for j in jobs if not j.reused], progress)
            if interrupts.received() > signals:  # Ctrl-C reached a library that took it for a failed task
                raise Interrupted("interrupted while the sweep's jobs ran")
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            self.app.after_batch(jobs, interrupted)
            if interrupted or (self.total is not None and self.done >= self.total):
                self.finish(interrupted)

    def _start(self, jobs: list[Job], composer: Composer) -> Progress:
        if self.total is None and OmegaConf.select(self.config, "hydra.sweeper.max_batch_size", default=0) is None:
            self.total = len(jobs)  # Hydra's basic sweeper without batches: this is the whole sweep
        if self.settings.backend in (Backend.dask, Backend.slurm):  # connect first: a store the cluster
            # cannot reach, or jobs that cannot start, are refused before anything is recorded
            self._open_pool(len(jobs))
        self.app.start(jobs, composer)
        self.progress = Progress(
            self.app.label, self.settings.progress_interval_s, lambda: self.app.running(self.app.jobs)
        )
        self.progress.total = self.total
        self.progress.swept = swept_keys(self.config)
        return self.progress

    def _run(self, jobs: list[Job], progress: Progress) -> None:
        """Dispatch the jobs; with synchronous halving, round after round: the jobs that paused at a rung go
        again once the app has decided it (to train on, or to be closed as pruned)."""
        signals = interrupts.received()
        while jobs:
            self._dispatch(jobs, progress)
            if interrupts.received() > signals:  # a Ctrl-C a worker's result took for a failure: no next round
                raise Interrupted("interrupted while the sweep's jobs ran")
            jobs = self.app.continuing(jobs)

    def _dispatch(self, jobs: list[Job], progress: Progress) -> None:
        pool = self.pool or self._open_pool(len(jobs))

        def on_result(job: Job, result: JobReturn | WorkerDied) -> None:
            self.app.read_result(job, result)
            if job.outcome != Outcome.PAUSED:  # a config waiting at a rung is not done
                progress.job_done(job)

        dispatch(
            pool,
            jobs,
            Task(self.hydra_context, self.task_function),
            self.app,
            on_result,
        )

    def _open_pool(self, n_jobs: int) -> Pool:
        pool = self.pool = self.pool_factory(self.settings, self.total or n_jobs).open()
        pool.check_store(self.app.tracking_uri)
        warm_up = self.app.warm_up()
        if warm_up is not None:
            pool.warm_up(warm_up)
        return pool

    def finish(self, interrupted: bool = False) -> None:
        """End the sweep (once): stop the workers, let the app close its records, print the summary.

        A Ctrl-C while the sweep ends (the workers stopping, the report being drawn) stops only what is left
        to draw: the app still closes its records. Unless the sweep was `interrupted` already (its caller
        has the interrupt in hand), it is raised once the summary is printed, as `SweepInterrupted`."""
        if self.finished:
            return
        self.finished = True
        signals = interrupts.received()
        if self.progress is not None:
            self.progress.stop()
        stopped = False
        try:
            if self.pool is not None:
                self.pool.close(abort=interrupted)
        except KeyboardInterrupt:
            stopped = True
        for line in self.app.finish(interrupted or stopped):  # a Ctrl-C in here stops the report, not the closing
            print(f"[{self.app.label}] {line}", flush=True)
        if not interrupted and (stopped or interrupts.received() > signals):
            raise SweepInterrupted(interrupted_text(self.app.jobs))
