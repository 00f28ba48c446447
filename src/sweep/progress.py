"""Console lines while a sweep runs: a line as each config ends (with the best so far, by the one ranking),
and every few seconds what is running. Counts run across batches: `[k/N configs done]` when the sweeper
says how many configs there will be, `[k configs done]` when it does not."""

import threading
from collections.abc import Callable

from src.outcomes import Outcome
from src.report.ranking import Entry, rank
from src.sweep.plan import Job


class Progress:
    def __init__(self, label: str, interval_s: float, running: Callable[[], list]):
        """`running()` lists (name, detail) of the jobs in progress, for the heartbeat line."""
        self.label, self.interval_s, self.running = label, interval_s, running
        self.total: int | None = None
        self.done = 0
        self.entries: list[Entry] = []
        self.group_names: dict = {}
        self.seeds_per_group: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def say(self, text: str) -> None:
        print(f"[{self.label}] {text}", flush=True)

    def batch(self, jobs: list[Job]) -> None:
        """A batch is planned: count its reused configs as done and start the heartbeat."""
        to_run = [j for j in jobs if not j.reused]
        for job in jobs:
            self.seeds_per_group[job.group] = self.seeds_per_group.get(job.group, 0) + 1
            self.group_names.setdefault(job.group, job.group_name or job.name)
        reused = [j for j in jobs if j.reused and j.twin is None]
        with self._lock:
            for job in reused:
                self._count(job)
        self.done += len(jobs) - len(to_run) - len(reused)  # twins: trained once with the job they repeat
        self.say(f"training {len(to_run)} configs ({len(reused)} already done, skipped)")
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()

    def _count(self, job: Job) -> None:
        self.done += 1
        self.entries.append(
            Entry(
                job.group,
                job.outcome,
                job.metrics.get("best_val_acc", float("nan")),
                job.metrics.get("best_val_ce", float("nan")),
            )
        )

    def job_done(self, job: Job) -> None:
        with self._lock:
            self._count(job)
            if job.outcome in (Outcome.FINISHED, Outcome.PRUNED) and "best_val_acc" in job.metrics:
                detail = f"best val_acc {job.metrics['best_val_acc']:.4f}"
            else:
                detail = (job.reason.splitlines() or [""])[0][:160]
            print(f"{self._counter()} {job.name}: {job.outcome.value}, {detail}{self._best_text()}", flush=True)

    def _counter(self) -> str:
        return f"[{self.done}/{self.total} configs done]" if self.total else f"[{self.done} configs done]"

    def _best_text(self) -> str:
        scores = rank(self.entries)
        if not scores or not scores[0].has_score:
            return ""
        best = scores[0]
        seeds = best.seeds_text(self.seeds_per_group.get(best.group))
        notes = "".join(f", {note}" for note in ("tied" if best.tied else "", seeds) if note)
        return f" | best so far: {self.group_names.get(best.group, best.group)} ({best.acc:.4f}{notes})"

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                running = self.running()
            except Exception:  # a busy store must not kill the progress line
                continue
            if running:
                text = ", ".join(f"{name} ({detail})" if detail else name for name, detail in running)
                with self._lock:
                    print(f"{self._counter()} running: {text}{self._best_text()}", flush=True)

    def stop(self) -> None:
        self._stop.set()
