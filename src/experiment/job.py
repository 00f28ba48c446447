"""What a sweep's parent hands each of its jobs (`SweepJob`), and what a worker does before its first one."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

from src import plots
from src.data.shared import DataShare
from src.pruning import PruneRule
from src.tracking.opening import open_existing_store, preload


@dataclass(frozen=True)
class SweepJob:
    """The run the parent created for this job, the data it decoded, and how the sweep prunes.

    The sweep's worker enters it around the job (`with job:`), and the task function passes
    `current_sweep_job()` on to `run_config`.
    """

    run_id: str
    tracking_uri: str
    data_share: DataShare | None = None
    sweep_id: str = ""
    experiment_id: str = ""
    prune: PruneRule = PruneRule()
    attempt_started_ms: int = 0  # when this sweep command began: runs of the sweep created earlier are older attempts
    seeded: bool = True  # other seeds of this config are in the sweep (pruned together: read at every epoch)
    pause_at: int | None = None  # synchronous halving: train to this rung, then pause there (checkpoint kept)
    prune_now: str | None = None  # synchronous halving pruned it at its rung: close it from its checkpoint, why
    _token: list[contextvars.Token[SweepJob | None]] = field(default_factory=list, compare=False, repr=False)

    def __enter__(self) -> SweepJob:
        self._token.append(_ACTIVE_JOB.set(self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _ACTIVE_JOB.reset(self._token.pop())


_ACTIVE_JOB: contextvars.ContextVar[SweepJob | None] = contextvars.ContextVar("netsweep_sweep_job", default=None)


def current_sweep_job() -> SweepJob | None:
    """The sweep job this thread is running, if any."""
    return _ACTIVE_JOB.get()


def prepare_worker(uri: str) -> None:
    """What a sweep worker does before its first job: import what a run needs (mlflow included), load
    matplotlib's fonts, and connect to the store when it exists (creating one is the sweep parent's job)."""
    preload().join()  # mlflow imported, and its once-per-process model requirements check started
    plots.warm_up()  # Figure 1 drawn once in memory: matplotlib's fonts and Agg loaded before the first config
    with contextlib.suppress(LookupError):  # no store yet: the sweep's parent creates it
        open_existing_store(uri)  # kept open for the configs this worker trains
