"""What a sweep does around each job, by the kind of Hydra app it runs: the two `SweepApp`s
(src/sweep/policy.py).

`HydraApp` is any Hydra app: jobs run isolated in worker processes, with thread limits and progress,
and Hydra gets back exactly what its own launchers return. `NetsweepApp` is netsweep's: every config is
checked before anything runs, the sweep is grouped in MLflow (a parent run, a child per config), configs
with a result are resumed rather than retrained, the data is decoded once for all workers, and the sweep
ends with a report.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from src import interrupts
from src.config.checks import validate
from src.config.identity import REPLICATE_KEY, config_hash, flatten, group_hash, to_plain
from src.config.naming import run_name
from src.config.schema import Config
from src.data.shared import DataShare
from src.errors import ConfigError, DataError, SweepIncomplete, WorkerLost
from src.experiment import checkpoints
from src.experiment.job import SweepJob, prepare_worker
from src.experiment.recording import EXPERIMENT_NOTE
from src.experiment.runner import publish_data
from src.outcomes import Outcome
from src.pruning import curve_metric
from src.report import figures
from src.report.build import build_report, summary
from src.report.ranking import Objective
from src.sweep.halving import Halving
from src.sweep.jobs import classify
from src.sweep.packing import packs
from src.sweep.plan import Composer, Job
from src.sweep.policy import SweepApp
from src.sweep.progress import plural
from src.sweep.record import StoreOpener, SweepRecord, SweepStart, sweep_id_for
from src.sweep.settings import LauncherSettings, Resume
from src.sweep.slots import WorkerDied
from src.sweep.winner import WinnerUse, use_the_winner
from src.tracking import names
from src.tracking.opening import open_store, resolve_uri
from src.tracking.ui import browse_lines

log = logging.getLogger("netsweep.sweep")
MAX_SKIPS_SHOWN = 4  # configs a resumed batch names among those it skips


def is_netsweep_config(config: DictConfig) -> bool:
    """True for a config composed from netsweep's own schema (conf/config.yaml)."""
    return OmegaConf.get_type(config) is Config


def _tell_job(config: DictConfig, uri: str, run_id: str, checkpoints: Path) -> None:
    """The job's config names the store and the run it records into and the checkpoint folder (all
    absolute: its params say so too), and its console goes to its log file only: the parent's console
    shows the sweep's progress."""
    with open_dict(config):
        config.tracking.uri, config.tracking.run_id = uri, run_id
        config.tracking.checkpoint_dir = str(checkpoints)
        handlers = OmegaConf.select(config, "hydra.job_logging.root.handlers")
        if handlers is not None and "file" in handlers:
            config.hydra.job_logging.root.handlers = ["file"]


def _done(jobs: list[Job]) -> str:
    """How the sweep's jobs ended: "done: 3 finished, 1 pruned"."""
    counts = {o: sum(j.outcome == o for j in jobs) for o in Outcome if o.ended}
    return "done: " + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)


def incomplete(jobs: list[Job]) -> str:
    """Which of the sweep's jobs did not finish, and what to do: '' when all did."""
    failed = [j for j in jobs if j.outcome.failed or not j.outcome.ended]
    if not failed:
        return ""
    listed = "; ".join(f"{j.name}: {j.outcome.value} ({(j.reason.splitlines() or [''])[0][:120]})" for j in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return (
        f"{len(failed)} of {len(jobs)} configs did not finish: {listed}{more}. "
        "Rerun the same command to train only those (see their runs in MLflow)"
    )


class HydraApp(SweepApp):
    """Any Hydra app (see the module docstring)."""

    def __init__(self, master: DictConfig, settings: LauncherSettings):
        self.master, self.settings = master, settings
        self.label = "sweep"
        self.jobs: list[Job] = []

    @property
    def tracking_uri(self) -> str | None:
        return None  # its jobs record nowhere netsweep knows of

    def plan(self, jobs: list[Job]) -> None:
        for job in jobs:
            name = " ".join(job.overrides) or f"job {job.index}"
            job.identify(name, key=name, group=name, group_name=name)

    def start(self, jobs: list[Job], composer: Composer) -> None:
        """The first batch is planned and the pool ready: set up whatever the sweep needs once."""

    def warm_up(self) -> Callable[[], None] | None:
        """What each new worker runs before its first job (a picklable function of no arguments), or None."""
        return None

    def prepare(self, jobs: list[Job]) -> None:
        self.jobs.extend(jobs)

    def context_of(self, job: Job) -> SweepJob | None:
        return None

    def read_result(self, job: Job, result: JobReturn | WorkerDied) -> None:
        job.end(classify(result), result if isinstance(result, JobReturn) else None)

    def packs(self, jobs: list[Job], workers: int) -> list[list[Job]]:
        """Any Hydra app's jobs run one by one, as Hydra runs them."""
        return [[job] for job in jobs]

    def continuing(self, jobs: list[Job]) -> list[Job]:
        """Any Hydra app's jobs never pause."""
        return []

    def untouched(self, jobs: list[Job]) -> list[Job]:
        """No record says which jobs started: none is known to be safe to run again."""
        return []

    def running(self, jobs: list[Job]) -> list[tuple[str, str]]:
        return []

    def after_batch(self, jobs: list[Job], interrupted: bool) -> None:
        pass

    def finish(self, interrupted: bool) -> list[str]:
        """The sweep is over: what to print."""
        return [_done(self.jobs)] if self.jobs else []

    def job_return(self, job: Job) -> JobReturn:
        """Hydra's own return for the job; for one whose worker died, a failure saying so."""
        if job.job_return is not None:
            return job.job_return
        ret = JobReturn(overrides=job.overrides, cfg=job.task_config, hydra_cfg=job.config, status=JobStatus.FAILED)
        ret.return_value = WorkerLost(f"job {job.index} ({job.name}): {job.reason}")
        return ret


class NetsweepApp(HydraApp):
    """netsweep's own app (see the module docstring)."""

    def __init__(self, master: DictConfig, settings: LauncherSettings, store_opener: StoreOpener = open_store):
        super().__init__(master, settings)
        self.open_store = store_opener
        self.uri = resolve_uri(master.tracking.uri)
        self.checkpoints = checkpoints.folder_for(master.tracking.checkpoint_dir, self.uri)
        self.record: SweepRecord | None = None  # opened in `start`
        self.share: DataShare | None = None
        self.started_ms = 0  # when this command began the sweep (set in `start`)
        self.seeds: dict[str, set[str]] = collections.defaultdict(set)  # group hash -> its seeds' config hashes
        self.report_dir = Path(str(master.hydra.sweep.dir)) / "report"
        self.objective = str(master.objective)
        self.prune = dataclasses.replace(settings.prune_rule, metric=curve_metric(self.objective))
        self.halving = Halving(self.prune, lambda: self._opened.curves())
        objective = Objective(self.objective)
        direction = str(OmegaConf.select(master, "hydra.sweeper.direction", default=objective.direction)).lower()
        if direction in ("minimize", "maximize") and direction != objective.direction:
            raise ConfigError(
                f"objective={objective.metric} is to {objective.direction}, but hydra.sweeper.direction={direction}: "
                f"set hydra.sweeper.direction={objective.direction} (or another objective)"
            )
        self.worst = -math.inf if objective.maximize else math.inf  # a diverged config's value

    @property
    def tracking_uri(self) -> str | None:
        return self.uri

    @property
    def _opened(self) -> SweepRecord:
        if self.record is None:
            raise RuntimeError("the sweep's record is opened by `start`, before any batch is prepared")
        return self.record

    def plan(self, jobs: list[Job]) -> None:
        """Check every config of the batch here, so a bad value fails the sweep before any run exists."""
        for job in jobs:
            task = job.task_config
            try:
                validate(task)
            except ConfigError as exc:
                raise ConfigError(f"sweep job #{job.index} ({' '.join(job.overrides)}): {exc}") from None
            unseeded = [o for o in job.overrides if not o.lstrip("+").startswith(f"{REPLICATE_KEY}=")]
            job.identify(
                run_name(task, job.overrides), config_hash(task), group_hash(task), group_name=run_name(task, unseeded)
            )

    def start(self, jobs: list[Job], composer: Composer) -> None:
        """Open the store and the parent run; decode the data once for the workers."""
        self.started_ms = time.time_ns() // 1_000_000  # runs of this sweep created earlier are older attempts
        store = self.open_store(self.uri)  # creates a fresh store, here, before any worker starts
        experiment = str(self.master.tracking.experiment)
        sweeper = str(OmegaConf.select(self.master, "hydra.sweeper._target_", default=""))
        sweep_id = sweep_id_for(experiment, [j.key for j in jobs], sweeper, self.prune.identity)
        defaults = {k: str(v) for k, v in flatten(to_plain(Job(-1, [], composer.compose([], -1)).task_config)).items()}
        command = " ".join(self.master.hydra.overrides.task)
        start = SweepStart(experiment, sweep_id, command, defaults, EXPERIMENT_NOTE, self.settings.tags())
        self.record = SweepRecord.open(store, start)
        self.label = f"sweep {sweep_id}"
        print(
            f"[{self.label}] parent run {self.record.parent_run_id} in experiment '{experiment}' ({self.uri})",
            flush=True,
        )
        self.share = DataShare.create()

    def warm_up(self) -> Callable[[], None]:
        return functools.partial(prepare_worker, self.uri)

    def prepare(self, jobs: list[Job]) -> None:
        super().prepare(jobs)
        figures.warm_up()  # the report's mathtext parser, built while the workers train (see there)
        for job in jobs:
            self.seeds[job.group].add(job.key)
        resume = self.settings.resume_mode
        done = resume.skipped(self._opened.results(self.prune.active)) if resume is not Resume.false else {}
        continuable = self._continuable if resume is not Resume.false else (lambda run_id: False)  # false: afresh
        self._opened.prepare(jobs, done, params_of=self._params, continuable=continuable)
        for job in jobs:
            if job.twin is not None:
                print(
                    f"[{self.label}] job #{job.index} is the same config as job #{job.twin.index}: trained once",
                    flush=True,
                )
        reused = [job for job in jobs if job.reused and job.twin is None]
        if reused and len(reused) < len(jobs):  # (all of them: the progress line says it once)
            shown = ", ".join(f"{job.name} ({job.outcome.value})" for job in reused[:MAX_SKIPS_SHOWN])
            more = f" and {len(reused) - MAX_SKIPS_SHOWN} more" if len(reused) > MAX_SKIPS_SHOWN else ""
            print(f"[{self.label}] skip {plural(len(reused), 'config')} with a result: {shown}{more}", flush=True)
        self._share_data([j for j in jobs if not j.reused])

    def _share_data(self, jobs: list[Job]) -> None:
        """Decode each data source the jobs read once, for every worker."""
        if self.share is None:
            return
        for data in {OmegaConf.to_yaml(j.config.data): j.config.data for j in jobs}.values():
            with contextlib.suppress(DataError):  # the configs that use it will each end `error` with its message
                publish_data(data, self.share)

    def _continuable(self, run_id: str) -> bool:
        """Whether the config's earlier run left a checkpoint to continue from."""
        if checkpoints.path_for(self.checkpoints, run_id).is_file():
            print(f"[{self.label}] continue run {run_id} from its checkpoint", flush=True)
            return True
        return False

    def _params(self, job: Job) -> dict[str, object]:
        """Once a job has its run: its config names the run, and its params are the config's (as the run
        itself will log them)."""
        _tell_job(job.config, self.uri, str(job.run_id), self.checkpoints)
        return flatten(to_plain(job.task_config))

    def context_of(self, job: Job) -> SweepJob:
        prune = self.prune
        return SweepJob(
            run_id=str(job.run_id),
            tracking_uri=self.uri,
            data_share=self.share,
            sweep_id=self._opened.sweep_id,
            experiment_id=self._opened.experiment_id,
            prune=prune,
            attempt_started_ms=self.started_ms,
            seeded=prune.by_config and len(self.seeds[job.group]) > 1,
            pause_at=self.halving.pause_at(job),
            prune_now=self.halving.prune_now(job),
        )

    def read_result(self, job: Job, result: JobReturn | WorkerDied) -> None:
        super().read_result(job, result)
        if isinstance(result, WorkerDied) and job.run_id:  # it may have died writing its checkpoint
            checkpoints.remove_leftovers(checkpoints.path_for(self.checkpoints, job.run_id))
        try:
            self._opened.read_result(job)  # the run's own account: pruned, its final metrics
        except Exception as exc:  # a busy store must not lose the job's outcome
            log.warning(f"netsweep: could not read back run {job.run_id}: {exc}")

    def packs(self, jobs: list[Job], workers: int) -> list[list[Job]]:
        return packs(jobs, self.settings.pack_size, min(len(jobs), workers))

    def continuing(self, jobs: list[Job]) -> list[Job]:
        again, lines = self.halving.decide(jobs)
        for line in lines:
            print(f"[{self.label}] {line}", flush=True)
        return again

    def untouched(self, jobs: list[Job]) -> list[Job]:
        return self._opened.untouched(jobs)

    def running(self, jobs: list[Job]) -> list[tuple[str, str]]:
        return self._opened.running(jobs)

    def after_batch(self, jobs: list[Job], interrupted: bool) -> None:
        self._opened.reconcile(jobs, interrupted)
        for job in jobs:
            job.copy_twin()

    def finish(self, interrupted: bool) -> list[str]:
        """Build the report on the parent run, close it, and say how it went and where everything is.

        A Ctrl-C while the report is drawn or the winner used stops that work, never the closing: the parent
        is closed killed (so a rerun, which trains nothing, draws the report) and the lines say so; the
        runner raises the interrupt once they are printed."""
        if self.record is None:
            return []
        record = self.record
        lines: list[str] = []
        try:
            self._report(interrupted, lines)
        except KeyboardInterrupt:
            interrupted = True
            lines.append(
                "interrupted before the report was complete: rerun the same command to draw it (nothing is "
                f"trained again), or python -m src.report {record.sweep_id}"
            )
        try:
            with interrupts.shielded():  # closing takes milliseconds: a Ctrl-C now waits for it
                try:
                    record.close(self.jobs, interrupted, incomplete(self.jobs))
                finally:
                    if self.share is not None:
                        self.share.remove()
        except KeyboardInterrupt:  # held back until the parent was closed; the runner raises it
            pass
        lines.append(f"{_done(self.jobs)} ({sum(j.reused for j in self.jobs)} reused)")
        lines.extend(browse_lines(self.uri, record.experiment_id, int(self.master.tracking.ui_port), record.sweep_id))
        lines.append(
            f"rebuild the report: python -m src.report {record.sweep_id} (python -m src.report lists every sweep)"
        )
        return lines

    def _report(self, interrupted: bool, lines: list[str]) -> None:
        """The report (drawn unless the parent's is current) and, unless interrupted, the winner's use."""
        record = self._opened
        current = record.was_finished and all(job.reused for job in self.jobs)  # nothing new to draw
        report = None
        try:
            report = build_report(record.store, record.sweep_id, self.report_dir, draw=not current)
            lines.extend(summary(report))
            lines.extend(self._where_the_report_is(current, bool(report.written)))
        except Exception as exc:  # a report problem must not hide the sweep's own outcome
            lines.append(f"could not build the report: {type(exc).__name__}: {exc}")
        try:
            if report is not None and not interrupted:
                lines.extend(use_the_winner(report.data, self.jobs, record, self._winner_use(), self.share))
        except Exception as exc:
            lines.append(f"could not evaluate or register the winner: {type(exc).__name__}: {exc}")

    def _where_the_report_is(self, current: bool, drawn: bool) -> list[str]:
        """Record on the parent where its report was drawn; when nothing was trained (the report is current),
        say which sweep's results were reused and where that report is."""
        record = self._opened
        if drawn:
            record.store.run_log(record.parent_run_id).set_tags({names.REPORT_FOLDER: str(self.report_dir.resolve())})
            return []
        if not current:
            return []
        earlier = record.store.run(record.parent_run_id)
        folder = earlier.tags.get(names.REPORT_FOLDER, "")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(earlier.start_time_ms / 1000))
        where = f"{folder} and " if folder and Path(folder).is_dir() else ""
        return [
            f"nothing new to train: sweep {record.sweep_id} already ran to its end ({when}, parent run "
            f"{record.parent_run_id}); its report: {where}report/ on the parent run"
        ]

    def _winner_use(self) -> WinnerUse:
        tracking = self.master.tracking
        log = self.report_dir / "evaluation.log"
        return WinnerUse(self.settings.register_best, bool(tracking.log_model), bool(tracking.evaluate), log)

    def job_return(self, job: Job) -> JobReturn:
        """What the sweeper gets: the objective for results (a diverged config: the worst value for the
        sweeper's direction), else a failure."""
        ret = job.job_return or JobReturn(overrides=job.overrides, cfg=job.task_config, hydra_cfg=job.config)
        if job.outcome.is_result:
            value = job.value if job.value is not None else job.metrics.get(self.objective)
            ret.status = JobStatus.COMPLETED
            ret.return_value = self.worst if job.outcome == Outcome.DIVERGED or value is None else value
        else:
            ret.status, ret.return_value = JobStatus.FAILED, SweepIncomplete(incomplete(self.jobs))
        return ret
