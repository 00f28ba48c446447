"""Run a batch of Hydra jobs as one tracked sweep: plan, resume, dispatch through joblib, reconcile.

The parent process does everything that must happen once: it composes and checks every config (a bad
value stops the sweep before any run exists), creates the MLflow experiment, the parent "sweep" run and
one child run per config to train (status SCHEDULED), so workers never race to create them. Workers
only attach to their child run and train. Whatever happens to a worker, the parent closes every child
run it created: nothing is left RUNNING.
"""

import atexit
import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from src.config import ConfigError, config_hash, run_name, validate
from src.experiment import import_in_background
from src.process_slots import WorkerDied

log = logging.getLogger("netsweep.sweep")

TERMINAL = ("finished", "diverged", "error", "killed")
DONE = ("finished", "diverged")  # a resumed sweep does not train these again


class SweepIncomplete(RuntimeError):
    """Some configs ended with an error or were killed; the message lists them and how to retry."""


@dataclass
class LauncherSettings:
    """`hydra.launcher.*`: how many configs at once, on which joblib backend, and resume behaviour."""

    n_jobs: int = -1
    backend: str = "loky"
    address: Optional[str] = None
    resume: bool = True
    progress_interval_s: float = 10.0


@dataclass
class PlannedConfig:
    """One job of the sweep, from composition in the parent to its outcome."""

    index: int
    overrides: list
    config: DictConfig
    config_hash: str
    name: str
    run_id: Optional[str] = None
    outcome: str = "scheduled"
    reason: str = ""
    return_value: Any = None
    reused: bool = False


@dataclass
class JobResult:
    """What a worker sends back: small and always picklable."""

    index: int
    outcome: str
    reason: str = ""
    return_value: Any = None


def execute_job(sweep_config, hydra_context, task_function, singleton_state, threads) -> JobResult:
    """Run one job in a worker. The parent composed its config, so a worker on another machine needs
    the code installed but not the config files. BLAS/OpenMP threads are limited to `threads` (None:
    leave them as the worker was started, as Dask's nanny sets them)."""
    from threadpoolctl import threadpool_limits

    from src import interrupts
    from src.errors import classify_job_failure

    interrupts.install()  # in a local worker process; Dask runs tasks on threads, where it does nothing
    setup_globals()
    Singleton.set_state(singleton_state)
    index = sweep_config.hydra.job.num
    HydraConfig.instance().set_config(sweep_config)
    with threadpool_limits(limits=threads):
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    if ret.status == JobStatus.COMPLETED:
        return JobResult(index, "finished", "", ret._return_value)
    outcome, reason = classify_job_failure(ret._return_value)
    return JobResult(index, outcome, reason)


def job_config(plan: "PlannedConfig", tracking_uri: str) -> DictConfig:
    """The job's composed config, told which store and child run to record into (a worker elsewhere
    would resolve a default URI against its own directory) and where its console goes."""
    config = plan.config.copy()
    with open_dict(config):
        config.tracking.uri = tracking_uri
        config.tracking.run_id = plan.run_id
        handlers = OmegaConf.select(config, "hydra.job_logging.root.handlers")
        if handlers is not None and "file" in handlers:
            config.hydra.job_logging.root.handlers = ["file"]  # the console belongs to the parent
    return config


def warm_up_worker() -> int:
    """Pay a worker's one-time costs before its first job arrives: imports and matplotlib's fonts.

    It must not open the tracking store: the parent may still be creating it (on a fresh SQLite file,
    concurrent schema migrations fail).
    """
    import src.experiment  # noqa: F401
    import src.tracking  # noqa: F401
    from src import plots

    figure = plots.figure_one({k: [1.0, 0.5] for k in ("train_loss", "val_loss", "train_acc", "val_acc")}, "warm-up")
    figure.canvas.draw()
    plots.plt.close(figure)
    return os.getpid()


class SweepRunner:
    """Everything a sweep does in the parent process; `launch` is called once per batch of jobs."""

    def __init__(self, hydra_context, task_function, config: DictConfig, settings: LauncherSettings):
        self.hydra_context, self.task_function, self.config, self.settings = (
            hydra_context, task_function, config, settings,
        )
        self.sweep = None  # the open sweep (tracking, parent run), once the first batch is planned
        self._data_folder = None  # decoded datasets shared with the workers

    # --- planning -------------------------------------------------------------------------------

    def plan(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[PlannedConfig]:
        """Compose and check every job's config here, so a bad value fails the sweep before any run."""
        plans = []
        for offset, overrides in enumerate(job_overrides):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = f"{config.hydra.job.name}_{initial_job_idx + offset}"
                config.hydra.job.num = initial_job_idx + offset
            task_config = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
            try:
                validate(task_config)
            except ConfigError as exc:
                raise ConfigError(f"sweep job #{initial_job_idx + offset} ({' '.join(overrides)}): {exc}") from None
            plans.append(
                PlannedConfig(
                    initial_job_idx + offset, list(overrides), config, config_hash(task_config),
                    run_name(task_config, overrides),
                )
            )
        return plans

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        from src.parallel import WorkerPool
        from src.sweep_record import SweepRecord

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        os.makedirs(str(self.config.hydra.sweep.dir), exist_ok=True)
        tracking_ready = import_in_background("src.tracking")  # overlaps with composing the configs
        self._share_folder()  # before any worker starts: they inherit where the shared data will be
        interrupted = False
        with WorkerPool(self.settings, len(job_overrides)) as pool:
            # Workers start and warm up while this process composes the configs and sets up tracking.
            warming = pool.warm_up(warm_up_worker, ())
            plans = self.plan(job_overrides, initial_job_idx)
            self.share_data(plans)
            pool.check_store(tracking_ready().resolve_tracking_uri(self.config.tracking.uri))
            if self.sweep is None:
                self.sweep = SweepRecord.open(self.config, plans, self.settings)
            self.sweep.prepare(plans, resume=self.settings.resume)
            for _ in warming or ():
                pass
            try:
                self.dispatch(pool, [p for p in plans if p.outcome == "scheduled"])
            except KeyboardInterrupt:
                interrupted = True
                raise
            finally:
                self.sweep.reconcile(plans, interrupted)
                pool.stop_workers()
                self.sweep.finish(plans, interrupted)
        summary = self.sweep.failure_summary(plans) if self.sweep.failed(plans) else ""
        return [self._job_return(p, summary) for p in plans]

    def _share_folder(self) -> None:
        from src.data import SHARED_CACHE_ENV

        if self._data_folder is None:
            self._data_folder = tempfile.mkdtemp(prefix="netsweep-data-")
            atexit.register(shutil.rmtree, self._data_folder, ignore_errors=True)
        os.environ[SHARED_CACHE_ENV] = self._data_folder

    def share_data(self, plans: list[PlannedConfig]) -> None:
        """Decode each dataset once, here, into a folder the workers memory-map instead of each reading it."""
        from src.data import DataError, share_source

        for data_config in {OmegaConf.to_yaml(p.config.data): p.config.data for p in plans}.values():
            try:
                share_source(data_config)
            except DataError:
                pass  # the configs that use it will each end `error` with this message

    # --- running --------------------------------------------------------------------------------

    def dispatch(self, pool, plans: list[PlannedConfig]) -> None:
        """Run the planned configs on the pool. A config whose worker process dies ends `killed` and the
        others carry on; should the pool itself break, the configs running then end `killed` and those
        not yet started go to a fresh pool."""
        pending = list(plans)
        progress = Progress(self.sweep, plans, self.settings.progress_interval_s)
        singleton_state = Singleton.get_state()
        by_index = {p.index: p for p in pending}
        try:
            while pending:
                before = len(pending)
                calls = [
                    (execute_job, (job_config(p, self.sweep.uri), self.hydra_context, self.task_function,
                                   singleton_state, pool.threads))
                    for p in pending
                ]
                try:
                    for result in pool.run(calls):
                        if isinstance(result, WorkerDied):  # its process died: this config alone is lost
                            plan = by_index[result.args[0].hydra.job.num]
                            plan.outcome, plan.reason = "killed", f"its worker process died ({result.reason})"
                        else:
                            plan = by_index[result.index]
                            plan.outcome, plan.reason, plan.return_value = (
                                result.outcome, result.reason, result.return_value,
                            )
                        progress.config_done(plan)
                    pending = []
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # the pool broke: a worker died (SIGKILL, out of memory, lost node)
                    pending = self._after_pool_failure(pending, exc)
                    if len(pending) == before:
                        for plan in pending:
                            plan.outcome, plan.reason = "error", f"could not be dispatched: {exc}"
                        pending = []
                    else:
                        pool.restart()
        finally:
            progress.stop()

    def _after_pool_failure(self, pending: list[PlannedConfig], exc: Exception) -> list[PlannedConfig]:
        """Configs that were running when the pool broke end `killed`; those not yet started go again."""
        statuses = self.sweep.run_statuses([p.run_id for p in pending if p.outcome == "scheduled"])
        again = []
        for plan in pending:
            if plan.outcome != "scheduled":
                continue
            if statuses.get(plan.run_id) == "SCHEDULED":
                again.append(plan)
            else:
                plan.outcome = "killed"
                plan.reason = f"its worker process died ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                log.warning(f"netsweep: {plan.name} was killed: {plan.reason}")
        return again

    @staticmethod
    def _job_return(plan: PlannedConfig, failure_summary: str) -> JobReturn:
        ret = JobReturn(overrides=plan.overrides, cfg=plan.config, hydra_cfg=None)
        if plan.outcome == "finished":
            ret.status, ret.return_value = JobStatus.COMPLETED, plan.return_value
        elif plan.outcome == "diverged":  # a result of the sweep, not a failure of the tool
            ret.status, ret.return_value = JobStatus.COMPLETED, math.inf
        else:
            ret.status, ret.return_value = JobStatus.FAILED, SweepIncomplete(failure_summary)
        return ret


class Progress:
    """Console lines while the sweep runs: each config as it ends, and every few seconds what is running."""

    def __init__(self, sweep, plans: list[PlannedConfig], interval_s: float):
        self.sweep, self.plans, self.interval_s = sweep, plans, interval_s
        self.total = len(plans)
        self.done = 0
        self.best = None  # (best_val_acc, name)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        if interval_s > 0:
            self._thread.start()
        print(f"[sweep {sweep.sweep_id}] training {self.total} configs "
              f"({sweep.skipped} already done, skipped)", flush=True)

    def config_done(self, plan: PlannedConfig) -> None:
        score = self.sweep.best_val_acc(plan.run_id) if plan.outcome == "finished" else None
        with self._lock:
            self.done += 1
            if score is not None and (self.best is None or score > self.best[0]):
                self.best = (score, plan.name)
            detail = f"best val_acc {score:.4f}" if score is not None else plan.reason.splitlines()[0][:160]
            print(f"[{self.done}/{self.total} configs done] {plan.name}: {plan.outcome}, {detail}{self._best_text()}",
                  flush=True)

    def _best_text(self) -> str:
        return f" | best so far: {self.best[1]} ({self.best[0]:.4f})" if self.best else ""

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                running = self.sweep.running_epochs([p.run_id for p in self.plans if p.outcome == "scheduled"])
            except Exception:  # a busy store must not kill the progress line
                continue
            if running:
                names = {p.run_id: p.name for p in self.plans}
                text = ", ".join(f"{names[r]} (epoch {e})" for r, e in running.items())
                with self._lock:
                    print(f"[{self.done}/{self.total} configs done] running: {text}{self._best_text()}", flush=True)

    def stop(self) -> None:
        self._stop.set()


def sweep_id_for(experiment: str, hashes: Sequence[str]) -> str:
    """The same grid in the same experiment gets the same id, which is what lets a rerun resume it."""
    text = experiment + "|" + ",".join(sorted(hashes))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
