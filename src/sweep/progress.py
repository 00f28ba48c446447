"""Console lines while a sweep runs: what it trains (said once), a line as each config ends (with the best so
far, by the one ranking), and every few seconds what is running. Configs are named by their swept values
only (`lr=0.1 decay=1e-4`), the settings they share left out. Counts run across batches: `[k/N configs
done]` when the sweeper says how many configs there will be, `[k configs done]` when it does not."""

import math
import threading
from collections.abc import Callable, Sequence

from omegaconf import OmegaConf

from src.config.identity import REPLICATE_KEY
from src.config.naming import swept_name
from src.outcomes import Outcome
from src.report.ranking import ACCURACY, CROSS_ENTROPY, Entry, Objective, rank
from src.sweep.plan import Job


def plural(count: int, noun: str) -> str:
    """'1 config', '2 configs'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def interrupted_text(jobs: Sequence[Job]) -> str:
    """What an interrupt left of a sweep's configs, once its runs are closed: those it stopped (killed, to be
    trained by a rerun) or, when every config had already ended, that it cost nothing."""
    stopped = [job for job in jobs if job.outcome == Outcome.KILLED and not job.reused]
    if stopped:
        return (
            f"interrupted; {plural(len(stopped), 'config')} in progress or waiting recorded as KILLED: rerun the "
            "same command to train them (one killed mid-training continues from its last epoch)"
        )
    return f"interrupted after every config had ended ({plural(len(jobs), 'config')}, none killed)"


class Progress:
    def __init__(self, label: str, interval_s: float, running: Callable[[], list]):
        """`running()` lists (name, detail) of the jobs in progress, for the heartbeat line."""
        self.label, self.interval_s, self.running = label, interval_s, running
        self.total: int | None = None
        self.swept: Sequence[str] | None = None  # the keys the sweep varies (src.config.naming.swept_keys)
        self.objective: Objective | None = None  # what ranks the configs: the jobs' `objective`
        self.done = 0
        self.batches = 0
        self.entries: list[Entry] = []
        self.names: dict[str, str] = {}  # a job's name -> what the lines call it
        self.group_names: dict = {}
        self.seeds_per_group: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def say(self, text: str) -> None:
        print(f"[{self.label}] {text}", flush=True)

    def _name(self, job: Job) -> str:
        return swept_name(job.overrides, self.swept or ()) or job.name

    def _group_name(self, job: Job) -> str:
        unseeded = [key for key in self.swept or () if key != REPLICATE_KEY]
        return swept_name(job.overrides, unseeded) or job.group_name or job.name

    def batch(self, jobs: list[Job]) -> None:
        """A batch is planned: count its reused configs as done, say what the sweep trains (on its first batch
        only: a sweeper that asks for configs a few at a time gets one line, not one per batch) and start
        the heartbeat."""
        to_run = [j for j in jobs if not j.reused]
        if self.objective is None and jobs:
            metric = OmegaConf.select(jobs[0].config, "objective", default=None)  # any Hydra app: the default
            self.objective = Objective(str(metric)) if metric else Objective()
        for job in jobs:
            self.seeds_per_group[job.group] = self.seeds_per_group.get(job.group, 0) + 1
            self.group_names.setdefault(job.group, self._group_name(job))
            self.names[job.name] = self._name(job)
        reused = [j for j in jobs if j.reused and j.twin is None]
        with self._lock:
            for job in reused:
                self._count(job)
        self.done += len(jobs) - len(to_run) - len(reused)  # twins: trained once with the job they repeat
        self.batches += 1
        if self.batches == 1:
            self.say(self._plan_text(len(to_run), len(reused), len(jobs)))
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()

    def _plan_text(self, to_run: int, reused: int, batch: int) -> str:
        """The first batch's line: how many configs train, how many were already done."""
        skipped = f" ({reused} already done, skipped)" if reused else ""
        if self.total is None or self.total > batch:  # a sweeper that asks for configs in batches
            first = f" ({reused} of the first {batch} already done, skipped)" if reused else ""
            how_many = plural(self.total, "config") if self.total else "configs"
            return f"training {how_many}, {batch} at a time as the sweeper asks for them{first}"
        if not to_run:
            return f"nothing to train: all {plural(reused, 'config')} already have a result"
        return f"training {plural(to_run, 'config')}{skipped}"

    def _count(self, job: Job) -> None:
        self.done += 1
        seed = OmegaConf.select(job.config, REPLICATE_KEY, default=None)
        self.entries.append(
            Entry(
                job.group,
                job.outcome,
                job.metrics.get(ACCURACY, math.nan),
                job.metrics.get(CROSS_ENTROPY, math.nan),
                metrics=dict(job.metrics),
                replicate=None if seed is None else str(seed),
            )
        )

    def _scores_text(self, job: Job) -> str:
        """'best_val_ce 0.0512, best_val_acc 0.9846': the objective, and the accuracy beside it."""
        metric = (self.objective or Objective()).metric
        values = [(name, job.metrics.get(name)) for name in dict.fromkeys((metric, ACCURACY))]
        return ", ".join(f"{name} {value:.4g}" for name, value in values if value is not None)

    def job_done(self, job: Job) -> None:
        with self._lock:
            self._count(job)
            detail = self._scores_text(job) if job.outcome in (Outcome.FINISHED, Outcome.PRUNED) else ""
            detail = detail or (job.reason.splitlines() or [""])[0][:160]
            name = self.names.get(job.name, job.name)
            print(f"{self._counter()} {name}: {job.outcome.value}, {detail}{self._best_text(job.group)}", flush=True)

    def _counter(self) -> str:
        return f"[{self.done}/{self.total} configs done]" if self.total else f"[{self.done} configs done]"

    def _best_text(self, just_done: str | None = None) -> str:
        """' | best so far: <config> (<objective>)'; for the config that just ended when it is the best, ', the
        best so far' (its name and scores are on the line already; with seeds, their mean)."""
        scores = rank(self.entries, self.objective)
        if not scores or not scores[0].has_score:
            return ""
        best = scores[0]
        seeds = best.seeds_text(self.seeds_per_group.get(best.group))
        if best.group == just_done:
            lead = ", tied for the best so far" if best.tied else ", the best so far"
            said = [f"mean {best.value:.4g}"] if best.scored > 1 else []
            said += [seeds] if seeds else []
            return lead + (f" ({', '.join(said)})" if said else "")
        notes = "".join(f", {note}" for note in ("tied" if best.tied else "", seeds) if note)
        return f" | best so far: {self.group_names.get(best.group, best.group)} ({best.value:.4g}{notes})"

    def _heartbeat(self) -> None:
        said = ""
        while not self._stop.wait(self.interval_s):
            try:
                said = self.beat(said)
            except Exception:  # a busy store must not kill the progress line
                continue

    def beat(self, said: str = "") -> str:
        """Print what is running now, unless it is the line `said` last time (nothing new); return the line."""
        running = self.running()
        text = ", ".join(
            f"{self.names.get(name, name)} ({detail})" if detail else self.names.get(name, name)
            for name, detail in running
        )
        with self._lock:
            line = f"{self._counter()} running: {text}{self._best_text()}" if running else ""
            if line and line != said:
                print(line, flush=True)
        return line or said

    def stop(self) -> None:
        self._stop.set()
