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
"""

import time

from threadpoolctl import ThreadpoolController

PROBE_STEPS = 40  # steps timed with each setting at the start of an epoch
MIN_WORK_PER_STEP = 2_000_000  # multiply-adds per step below which one thread is always the faster


class ThreadGovernor:
    """The `on_step` of `fit`. `fixed`: always this many threads (the config's `threads`); None: choose."""

    def __init__(self, max_threads: int, fixed: int | None, work_per_step: int, steps_per_epoch: int):
        self.controller = ThreadpoolController()
        self.max_threads = max(1, max_threads)
        small = work_per_step < MIN_WORK_PER_STEP or steps_per_epoch < 4 * PROBE_STEPS
        self.fixed = fixed if fixed is not None else (1 if small or self.max_threads == 1 else None)
        self.current: int | None = None
        self.choices: list[int] = []  # the setting each epoch trained with, after its probe
        self._original = None  # the first limiter, which restores the process's limits in `close`
        self._one_thread_s: float | None = None  # this epoch's one-thread stretch; None once decided
        self._started = 0.0

    @property
    def policy(self) -> str:
        return f"fixed at {self.fixed}" if self.fixed is not None else f"measured each epoch: 1 or {self.max_threads}"

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
            self._use(1)
            self._started, self._one_thread_s = time.perf_counter(), None
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

    def _decide(self, threads: int) -> None:
        self._use(threads)
        self.choices.append(threads)
        self._one_thread_s = None
