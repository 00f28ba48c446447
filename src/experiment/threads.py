"""How many BLAS threads a run's training uses, chosen by measurement as it trains.

A second thread speeds up the matrix products of a quiet machine, but when another process keeps a core
busy, a BLAS thread waiting for its descheduled peer loses whole time slices and an epoch can take three
times as long. So `ThreadGovernor` times a short stretch of steps with one thread and then the same number
with all the threads it may use at the start of every epoch, and trains the rest of the epoch with the
faster: fast on a quiet machine, and never stuck on a busy one for more than a probe. The second stretch
is abandoned as soon as it has taken longer than the whole first one, so on a busy machine a probe costs
about as much as the one-thread steps it replaces (a full stretch of contended steps cost a quarter of
an epoch of Fashion-MNIST here). Small nets (digits) train with one thread: their products are too small
for a second thread to pay for its synchronisation.

In a local sweep, a worker may use the cores shared out over the workers that are running a config at the
time: when the last configs of a sweep (or of a halving round) leave workers idle, those still training
probe and take the idle cores at their next epoch, and give them back at the epoch after the others start
again. The sweep's worker pool writes that number to a file named by $NETSWEEP_LENT_THREADS
(src/sweep/slots.py); `lent_threads` reads it.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

from threadpoolctl import ThreadpoolController

PROBE_STEPS = 40  # steps timed with each setting at the start of an epoch
MIN_WORK_PER_STEP = 2_000_000  # multiply-adds per step below which one thread is always the faster
LENT_VARIABLE = "NETSWEEP_LENT_THREADS"  # a file: the threads a local sweep's worker may use now


def lent_threads() -> Callable[[], int | None] | None:
    """In a local sweep's worker, what reads the threads it may use now (None when the file cannot be read);
    None in any other process."""
    path = os.environ.get(LENT_VARIABLE)
    if not path:
        return None

    def read() -> int | None:
        try:
            return int(Path(path).read_text())
        except (OSError, ValueError):  # the sweep is ending, or the file is being replaced
            return None

    return read


class ThreadGovernor:
    """The `on_step` of `fit`. `fixed`: always this many threads (the config's `threads`); None: choose."""

    def __init__(
        self,
        max_threads: int,
        fixed: int | None,
        work_per_step: int,
        steps_per_epoch: int,
        lent: Callable[[], int | None] | None = None,
    ):
        self.controller = ThreadpoolController()
        self.own = self.max_threads = max(1, max_threads)  # this process's share; more while cores are lent
        self.lent = lent  # a local sweep's worker: the threads it may use now (`lent_threads`)
        small = work_per_step < MIN_WORK_PER_STEP or steps_per_epoch < 4 * PROBE_STEPS
        alone = self.max_threads == 1 and lent is None
        self.fixed = fixed if fixed is not None else (1 if small or alone else None)
        self.current: int | None = None
        self.choices: list[int] = []  # the setting each epoch trained with, after its probe
        self._original = None  # the first limiter, which restores the process's limits in `close`
        self._one_thread_s: float | None = None  # this epoch's one-thread stretch; None once decided
        self._started = 0.0
        self._probing = False  # this epoch compares one thread with max_threads

    @property
    def policy(self) -> str:
        if self.fixed is not None:
            return f"fixed at {self.fixed}"
        if self.lent is not None:
            return f"measured each epoch: 1 or {self.own}, more while other workers of the sweep are idle"
        return f"measured each epoch: 1 or {self.max_threads}"

    def _use(self, threads: int) -> None:
        if threads != self.current:
            limiter = self.controller.limit(limits=threads, user_api="blas")
            self._original = self._original or limiter
            self.current = threads

    def close(self) -> None:
        """Give the process back the thread limits it had before this run."""
        if self._original is not None:
            self._original.restore_original_limits()
            self._original, self.current = None, None

    @property
    def used(self) -> int:
        """The setting the run trained with most (tagged on the run, with its `policy`)."""
        return max(set(self.choices), key=self.choices.count) if self.choices else self.fixed or self.max_threads

    def __call__(self, epoch: int, step: int) -> None:
        if self.fixed is not None:
            if step == 1:
                self._use(self.fixed)
                self.choices.append(self.fixed)
            return
        if step == 1:
            self._begin_epoch()
        elif not self._probing:
            return
        elif step == PROBE_STEPS + 1:
            now = time.perf_counter()
            self._one_thread_s, self._started = now - self._started, now
            self._use(self.max_threads)
        elif self._one_thread_s is not None:  # the all-threads stretch is under way
            taken = time.perf_counter() - self._started
            if taken > self._one_thread_s:  # slower already, whatever the rest of the stretch does
                self._decide(1)
            elif step == 2 * PROBE_STEPS + 1:
                self._decide(self.max_threads)

    def _begin_epoch(self) -> None:
        """One thread for the first stretch; whether there is a second setting to compare it with."""
        if self.lent is not None:
            self.max_threads = max(self.own, self.lent() or self.own)
        self._use(1)
        self._started, self._one_thread_s, self._probing = time.perf_counter(), None, self.max_threads > 1
        if not self._probing:  # nothing to compare this epoch: one thread is all it may use
            self.choices.append(1)

    def _decide(self, threads: int) -> None:
        self._use(threads)
        self.choices.append(threads)
        self._one_thread_s, self._probing = None, False
