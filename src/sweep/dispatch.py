"""Running planned jobs on a worker pool until each has a result or a reason it has none.

A job whose worker process dies ends `killed` and the others carry on. Should the pool itself break (a
lost Dask worker, say), the jobs that had started end `killed` and those that had not go to a fresh pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction

from src.sweep.jobs import execute_job, execute_pack
from src.sweep.plan import Job
from src.sweep.policy import Pool, SweepApp
from src.sweep.slots import WorkerDied

log = logging.getLogger("netsweep.sweep")


OnResult = Callable[[Job, JobReturn | WorkerDied], None]
Untouched = Callable[[list[Job]], list[Job]]


@dataclass(frozen=True)
class Task:
    """What every job of the sweep runs: Hydra's task function, in Hydra's context."""

    hydra_context: HydraContext
    function: TaskFunction


def dispatch(
    pool: Pool,
    jobs: list[Job],
    task: Task,
    app: SweepApp,
    on_result: OnResult,
) -> None:
    """Run `jobs` on `pool`; `on_result(job, JobReturn or WorkerDied)` is called as each ends.

    The app says what the worker enters around each job (`context_of`), which jobs never started
    (`untouched`: after the pool broke, only those are safe to run again) and which train together as one
    call (`packs`).
    """
    singleton_state = Singleton.get_state()
    by_index = {job.index: job for job in jobs}
    pending = list(jobs)
    untouched = app.untouched
    while pending:
        packs = app.packs(pending, pool.n_workers)
        calls = [_call(pack, task, singleton_state, pool.threads, app.context_of) for pack in packs]
        done = set()
        try:
            for returned in pool.run(calls):
                for result in _each(returned):
                    job = by_index[_job_index(result)]
                    done.add(job.index)
                    on_result(job, result)
            return
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the pool broke: a worker died (SIGKILL, out of memory, lost node)
            remaining = [job for job in pending if job.index not in done]
            again = _after_pool_failure(remaining, exc, untouched, on_result)
            if not done and len(again) == len(pending):  # the pool cannot run anything: do not loop
                for job in again:
                    on_result(job, WorkerDied((job.config,), f"could not be dispatched: {exc}"))
                return
            pending = again
            pool.restart()


def _call(
    pack: list[Job], task: Task, singleton_state: dict, threads: int | None, context_of: Callable[[Job], Any]
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The worker call that trains `pack`: `execute_job` for a job alone, `execute_pack` for several."""
    if len(pack) == 1:
        job = pack[0]
        return execute_job, (job.config, task.hydra_context, task.function, singleton_state, threads, context_of(job))
    configs, contexts = [job.config for job in pack], [context_of(job) for job in pack]
    return execute_pack, (configs, task.hydra_context, task.function, singleton_state, threads, contexts)


def _each(returned: Any) -> list[JobReturn | WorkerDied]:
    """What came back for one call, per job: a pack's list of returns, or its dead worker once per job."""
    if isinstance(returned, list):
        return returned
    if isinstance(returned, WorkerDied) and isinstance(returned.args[0], list):
        return [WorkerDied((config,), returned.reason) for config in returned.args[0]]
    return [returned]


def _job_index(result: JobReturn | WorkerDied) -> int:
    if isinstance(result, WorkerDied):
        return int(result.args[0].hydra.job.num)
    assert isinstance(result, JobReturn) and result.hydra_cfg is not None
    return int(result.hydra_cfg.hydra.job.num)


def _after_pool_failure(jobs: list[Job], exc: Exception, untouched: Untouched, on_result: OnResult) -> list[Job]:
    """Jobs that were running when the pool broke end `killed`; those that never started go again."""
    fresh = {job.index for job in untouched(jobs)}
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__
    for job in jobs:
        if job.index not in fresh:
            log.warning(f"netsweep: {job.name} was killed: its worker process died ({reason})")
            on_result(job, WorkerDied((job.config,), reason))
    return [job for job in jobs if job.index in fresh]
