"""What a sweep does around each job, by the kind of Hydra app it runs.

`HydraApp` is any Hydra app: jobs run isolated in worker processes, with thread limits and progress,
and Hydra gets back exactly what its own launchers return. `NetsweepApp` is netsweep's: every config is
checked before anything runs, the sweep is grouped in MLflow (a parent run, a child per config), configs
with a result are resumed rather than retrained, the data is decoded once for all workers, and the sweep
ends with a report.
"""

import collections
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from src.config.checks import validate
from src.config.identity import REPLICATE_KEY, config_hash, flatten, group_hash, to_plain
from src.config.naming import run_name
from src.config.schema import Config
from src.data.loader import share_source
from src.data.shared import DataShare
from src.errors import ConfigError, DataError, RunDiverged, SweepIncomplete, WorkerLost
from src.experiment.job import SweepJob, prepare_worker
from src.experiment.recording import EXPERIMENT_NOTE
from src.experiment.runner import evaluate_run
from src.outcomes import Outcome
from src.pruning import PruneRule
from src.report.build import build_report, summary, winning_run
from src.sweep.jobs import failure
from src.sweep.plan import Job
from src.sweep.record import SweepRecord, sweep_id_for
from src.sweep.slots import WorkerDied
from src.tracking import names
from src.tracking.store import open_store, resolve_uri
from src.tracking.ui import browse_lines

log = logging.getLogger("netsweep.sweep")
SETTINGS_TAGGED = ("n_jobs", "backend", "resume", "prune", "prune_min_epochs", "prune_factor", "prune_by")


def is_netsweep_config(config: DictConfig) -> bool:
    """True for a config composed from netsweep's own schema (conf/config.yaml)."""
    return OmegaConf.get_type(config) is Config


def _tell_job(config: DictConfig, uri: str, run_id: str) -> None:
    """The job's config names the store and the run it records into (so its params say so too), and its
    console goes to its log file only: the parent's console shows the sweep's progress."""
    with open_dict(config):
        config.tracking.uri, config.tracking.run_id = uri, run_id
        handlers = OmegaConf.select(config, "hydra.job_logging.root.handlers")
        if handlers is not None and "file" in handlers:
            config.hydra.job_logging.root.handlers = ["file"]


def _done(jobs: list[Job]) -> str:
    """How the sweep's jobs ended: "done: 3 finished, 1 pruned"."""
    counts = {o: sum(j.outcome == o for j in jobs) for o in Outcome if o.ended}
    return "done: " + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)


class HydraApp:
    """Any Hydra app (see the module docstring)."""

    def __init__(self, master: DictConfig, settings):
        self.master, self.settings = master, settings
        self.label = "sweep"
        self.jobs: list[Job] = []

    def plan(self, jobs: list[Job]) -> None:
        for job in jobs:
            job.name = " ".join(job.overrides) or f"job {job.index}"
            job.key = job.group = job.group_name = job.name

    def start(self, jobs: list[Job], composer) -> None:
        """The first batch is planned and the pool ready: set up whatever the sweep needs once."""

    def warm_up(self) -> Callable[[], None] | None:
        """What each new worker runs before its first job (a picklable function of no arguments), or None."""
        return None

    def prepare(self, jobs: list[Job]) -> None:
        self.jobs.extend(jobs)

    def context_of(self, job: Job):
        return None

    def read_result(self, job: Job, result) -> None:
        if isinstance(result, WorkerDied):
            job.outcome, job.reason = Outcome.KILLED, f"its worker process died ({result.reason})"
            job.job_return = JobReturn(
                overrides=job.overrides, cfg=job.task_config, hydra_cfg=job.config, status=JobStatus.FAILED
            )
            job.job_return.return_value = WorkerLost(f"job {job.index} ({job.name}): {job.reason}")
            return
        job.job_return = result
        exc = failure(result)
        job.outcome = Outcome.FINISHED if exc is None else Outcome.ERROR
        job.reason = "" if exc is None else f"{type(exc).__name__}: {exc}"

    def untouched(self, jobs: list[Job]) -> list[Job]:
        """No record says which jobs started: none is known to be safe to run again."""
        return []

    def running(self, jobs: list[Job]) -> list:
        return []

    def after_batch(self, jobs: list[Job], interrupted: bool) -> None:
        pass

    def finish(self, interrupted: bool) -> list[str]:
        """The sweep is over: what to print."""
        return [_done(self.jobs)] if self.jobs else []

    def job_return(self, job: Job) -> JobReturn:
        return job.job_return


class NetsweepApp(HydraApp):
    """netsweep's own app (see the module docstring)."""

    def __init__(self, master: DictConfig, settings, store_opener=open_store):
        super().__init__(master, settings)
        self.open_store = store_opener
        self.uri = resolve_uri(master.tracking.uri)
        self.record: SweepRecord | None = None
        self.share: DataShare | None = None
        self.started_ms = 0  # when this command began the sweep (set in `start`)
        self.seeds: dict = collections.defaultdict(set)  # group hash -> the config hashes of its seeds
        self.report_dir = Path(str(master.hydra.sweep.dir)) / "report"
        self.objective = str(master.objective)
        self.prune = PruneRule(
            settings.prune, settings.prune_min_epochs, settings.prune_factor, settings.prune_by == "config"
        )
        direction = OmegaConf.select(master, "hydra.sweeper.direction", default="minimize")
        self.worst = -math.inf if str(direction).lower() == "maximize" else math.inf  # a diverged config's value

    def plan(self, jobs: list[Job]) -> None:
        """Check every config of the batch here, so a bad value fails the sweep before any run exists."""
        for job in jobs:
            task = job.task_config
            try:
                validate(task)
            except ConfigError as exc:
                raise ConfigError(f"sweep job #{job.index} ({' '.join(job.overrides)}): {exc}") from None
            job.key, job.group = config_hash(task), group_hash(task)
            job.name = run_name(task, job.overrides)
            job.group_name = run_name(
                task, [o for o in job.overrides if not o.lstrip("+").startswith(f"{REPLICATE_KEY}=")]
            )

    def start(self, jobs: list[Job], composer) -> None:
        """Open the store and the parent run; decode the data once for the workers."""
        self.started_ms = time.time_ns() // 1_000_000  # runs of this sweep created earlier are older attempts
        store = self.open_store(self.uri)  # creates a fresh store, here, before any worker starts
        sweeper = str(OmegaConf.select(self.master, "hydra.sweeper._target_", default=""))
        sweep_id = sweep_id_for(str(self.master.tracking.experiment), [j.key for j in jobs], sweeper)
        defaults = {k: str(v) for k, v in flatten(to_plain(Job(-1, [], composer.compose([], -1)).task_config)).items()}
        command = " ".join(self.master.hydra.overrides.task)
        settings = {f"launcher.{key}": getattr(self.settings, key) for key in SETTINGS_TAGGED}
        self.record = SweepRecord.open(
            store, str(self.master.tracking.experiment), sweep_id, command, defaults, EXPERIMENT_NOTE, settings
        )
        self.label = f"sweep {sweep_id}"
        print(
            f"[{self.label}] parent run {self.record.parent_run_id} in experiment "
            f"'{self.master.tracking.experiment}' ({self.uri})",
            flush=True,
        )
        self.share = DataShare.create()

    def warm_up(self) -> Callable[[], None]:
        return functools.partial(prepare_worker, self.uri)

    def _results(self) -> dict:
        """The configs resume skips: with a result, pruned ones excepted when asked."""
        resume = str(self.settings.resume).lower()
        if resume == "false":
            return {}
        done = self.record.results()
        return {k: r for k, r in done.items() if r.outcome != Outcome.PRUNED} if resume == "except_pruned" else done

    def prepare(self, jobs: list[Job]) -> None:
        super().prepare(jobs)
        for job in jobs:
            self.seeds[job.group].add(job.key)
        self.record.prepare(jobs, self._results(), params_of=self._params)
        for job in jobs:
            if job.twin is not None:
                print(
                    f"[{self.label}] job #{job.index} is the same config as job #{job.twin.index}: trained once",
                    flush=True,
                )
            elif job.reused:
                print(f"[{self.label}] skip {job.name}: already {job.outcome.value} in run {job.run_id}", flush=True)
        to_run = [j for j in jobs if not j.reused]
        for data in {OmegaConf.to_yaml(j.config.data): j.config.data for j in to_run}.values():
            try:
                share_source(data, self.share)
            except DataError:
                pass  # the configs that use it will each end `error` with this message

    def _params(self, job: Job) -> dict:
        """Once a job has its run: its config names the run, and its params are the config's (as the run
        itself will log them)."""
        _tell_job(job.config, self.uri, job.run_id)
        return flatten(to_plain(job.task_config))

    def context_of(self, job: Job) -> SweepJob:
        seeded = self.prune.by_config and len(self.seeds[job.group]) > 1
        return SweepJob(
            job.run_id,
            self.uri,
            self.share,
            self.record.sweep_id,
            self.record.experiment_id,
            self.prune,
            self.started_ms,
            seeded,
        )

    def read_result(self, job: Job, result) -> None:
        if isinstance(result, WorkerDied):
            job.outcome, job.reason = Outcome.KILLED, f"its worker process died ({result.reason})"
        else:
            job.job_return = result
            exc = failure(result)
            if exc is None:
                job.outcome, job.value = Outcome.FINISHED, result.return_value
            elif isinstance(exc, RunDiverged):
                job.outcome, job.reason = Outcome.DIVERGED, str(exc)
            elif isinstance(exc, (WorkerLost, KeyboardInterrupt)):
                job.outcome, job.reason = Outcome.KILLED, str(exc)
            else:
                job.outcome, job.reason = Outcome.ERROR, f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:
            self.record.read_result(job)  # the run's own account: pruned, its final metrics
        except Exception as exc:  # a busy store must not lose the job's outcome
            log.warning(f"netsweep: could not read back run {job.run_id}: {exc}")

    def untouched(self, jobs: list[Job]) -> list[Job]:
        return self.record.untouched(jobs)

    def running(self, jobs: list[Job]) -> list:
        return self.record.running(jobs)

    def after_batch(self, jobs: list[Job], interrupted: bool) -> None:
        self.record.reconcile(jobs, interrupted)
        for job in jobs:
            if job.twin is not None:
                twin = job.twin
                job.outcome, job.reason, job.value, job.metrics = twin.outcome, twin.reason, twin.value, twin.metrics

    def failures(self) -> str:
        failed = [j for j in self.jobs if j.outcome.failed or not j.outcome.ended]
        if not failed:
            return ""
        listed = "; ".join(
            f"{j.name}: {j.outcome.value} ({(j.reason.splitlines() or [''])[0][:120]})" for j in failed[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return (
            f"{len(failed)} of {len(self.jobs)} configs did not finish: {listed}{more}. "
            "Rerun the same command to train only those (see their runs in MLflow)"
        )

    def finish(self, interrupted: bool) -> list[str]:
        """Build the report on the parent run, close it, and say how it went and where everything is."""
        if self.record is None:
            return []
        lines = []
        current = self.record.was_finished and all(job.reused for job in self.jobs)  # nothing new to draw
        report = None
        try:
            report = build_report(self.record.store, self.record.sweep_id, self.report_dir, draw=not current)
            lines.extend(summary(report))
        except Exception as exc:  # a report problem must not hide the sweep's own outcome
            lines.append(f"could not build the report: {type(exc).__name__}: {exc}")
        try:
            if report is not None and not interrupted:
                lines.extend(self._use_the_winner(report.data))
        except Exception as exc:
            lines.append(f"could not evaluate or register the winner: {type(exc).__name__}: {exc}")
        try:
            self.record.close(self.jobs, interrupted, self.failures())
        finally:
            if self.share is not None:
                self.share.remove()
        lines.append(f"{_done(self.jobs)} ({sum(j.reused for j in self.jobs)} reused)")
        lines.extend(browse_lines(self.uri, self.record.experiment_id, int(self.master.tracking.ui_port)))
        lines.append(f"rebuild the comparison: python -m src.report {self.record.sweep_id}")
        return lines

    def _use_the_winner(self, data) -> list[str]:
        """Evaluate the winning config's best finished run's model the MLflow way (once) and register it when
        asked; say why not when it cannot be."""
        lines, store, tracking = [], self.record.store, self.master.tracking
        name = self.settings.register_best
        winner = winning_run(data, outcomes={Outcome.FINISHED})
        job = next((j for j in self.jobs if winner is not None and j.run_id == winner.run_id), None)
        if job is None or not tracking.log_model:
            why = (
                "tracking.log_model=false: runs save no model"
                if not tracking.log_model
                else "no config has a result"
                if not data.best
                else "the winning config has no finished run"
                if winner is None
                else f"its run {winner.run_id} is not one of this command's configs"
            )
            return [f"winner not registered as {name}: {why}"] if name else []
        tags = store.run(job.run_id).tags
        if tracking.evaluate and names.EVALUATED not in tags:
            evaluate_run(store, job.run_id, job.task_config, self.share)
            lines.append(
                f"winner run {job.run_id} evaluated with mlflow.models.evaluate "
                "(per_class_metrics.csv, confusion_matrix.png)"
            )
        if name:
            version_tags = {
                "sweep_id": self.record.sweep_id,
                "config": job.name,
                "best_val_acc": f"{winner.best_val_acc:.6g}",
                names.DATA_FINGERPRINT: tags.get(names.DATA_FINGERPRINT, ""),
            }
            version, moved = store.register_model(name, job.run_id, "best", version_tags)
            lines.append(
                f"{'registered' if moved else 'already registered'}: models:/{name}@best is version "
                f"{version} (run {job.run_id})"
            )
        return lines

    def job_return(self, job: Job) -> JobReturn:
        """What the sweeper gets: the objective for results (a diverged config: the worst value for the
        sweeper's direction), else a failure."""
        ret = job.job_return or JobReturn(overrides=job.overrides, cfg=job.task_config, hydra_cfg=job.config)
        if job.outcome.is_result:
            value = job.value if job.value is not None else job.metrics.get(self.objective)
            if value is None and self.objective == "best_val_ce":  # a run from before netsweep logged it
                value = job.metrics.get("best_val_loss")
            ret.status = JobStatus.COMPLETED
            ret.return_value = self.worst if job.outcome == Outcome.DIVERGED or value is None else value
        else:
            ret.status, ret.return_value = JobStatus.FAILED, SweepIncomplete(self.failures())
        return ret
