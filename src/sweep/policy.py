"""The runner's seams, written down once: `SweepApp`, the hooks a sweep policy provides to the runner
(src/sweep/runner.py), and `Pool`, where it runs the jobs.

The runner owns the order (plan, start, prepare, dispatch, after each batch, finish); an app says what
each step means for the jobs of its kind of Hydra app (src/sweep/apps.py: any Hydra app, or netsweep's).
Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from hydra.core.utils import JobReturn

from src.sweep.plan import Composer, Job
from src.sweep.settings import LauncherSettings

if TYPE_CHECKING:
    from src.sweep.slots import WorkerDied  # joblib's backend API: heavy


class SweepApp(Protocol):
    label: str  # how the sweep's console lines start: "[sweep 1a2b3c...]"
    jobs: list[Job]  # every job prepared so far, across batches

    @property
    def tracking_uri(self) -> str | None:
        """The store the sweep's workers write to (checked against where they run), or None for none."""
        ...

    def plan(self, jobs: list[Job]) -> None:
        """Name each job of a new batch and say what identifies its results; raise on a bad config."""

    def start(self, jobs: list[Job], composer: Composer) -> None:
        """The first batch is planned and the pool opening: set up what the sweep needs once."""

    def warm_up(self) -> Callable[[], None] | None:
        """What each new worker runs before its first job (a picklable function of no arguments), or None."""

    def prepare(self, jobs: list[Job]) -> None:
        """Before a batch runs: record it, and mark the jobs whose result is already known as reused."""

    def context_of(self, job: Job) -> AbstractContextManager[Any] | None:
        """What the worker enters around `job` (None: nothing)."""

    def read_result(self, job: Job, result: JobReturn | WorkerDied) -> None:
        """A job came back from its worker (or its worker died): end it."""

    def packs(self, jobs: list[Job], workers: int) -> list[list[Job]]:
        """`jobs` grouped into the packs `workers` workers train, each as one computation (alone: one job per pack)."""
        ...

    def continuing(self, jobs: list[Job]) -> list[Job]:
        """After a round of dispatch: those of `jobs` that paused at a pruning rung, the rung decided for them
        all at once (synchronous halving), to dispatch again ([] when none waits)."""
        ...

    def untouched(self, jobs: list[Job]) -> list[Job]:
        """Those of `jobs` known never to have started (safe to dispatch again after the pool broke)."""

    def running(self, jobs: list[Job]) -> list[tuple[str, str]]:
        """(name, detail) of those of `jobs` running now, for the progress line."""

    def after_batch(self, jobs: list[Job], interrupted: bool) -> None:
        """The batch is over (or was interrupted): settle every job of it."""

    def finish(self, interrupted: bool) -> list[str]:
        """The sweep is over: close what it opened; the lines to print."""

    def job_return(self, job: Job) -> JobReturn:
        """What Hydra's sweeper gets back for `job`."""


class Pool(Protocol):
    """Where the runner's jobs run (src/sweep/pool.py's `WorkerPool`; tests/fakes.py's `InlinePool`)."""

    threads: int | None  # BLAS/OpenMP threads each job may use (None: as its worker was started)
    n_workers: int  # how many jobs it runs at once

    def open(self) -> Pool:
        """Start the workers (or connect to them); the pool itself."""
        ...

    def check_store(self, tracking_uri: str | None) -> None:
        """Refuse a tracking store the workers could not all write to."""

    def warm_up(self, function: Callable[[], None]) -> None:
        """Have each new worker run `function()` before its first job."""

    def run(self, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> Iterator[Any]:
        """Start the (function, args) calls; their results (or `WorkerDied`s) as they end."""
        ...

    def restart(self) -> None:
        """A fresh pool after it broke."""

    def close(self, abort: bool = False) -> None:
        """Stop the workers (`abort`: kill what runs)."""


PoolFactory = Callable[[LauncherSettings, int], Pool]  # (settings, how many jobs the sweep has) -> a pool
