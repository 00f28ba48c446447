"""A joblib backend in which one worker process dying costs only the call it was running.

joblib's own loky backend runs every worker in one process pool: when a worker dies (SIGKILL, the
out-of-memory killer), the pool is broken, loky kills the other workers too, and joblib aborts the
whole batch. Here each worker is a pool of its own (a "slot": a single-process loky executor). A call
whose process dies comes back as a `WorkerDied` result carrying the call's arguments, the slot gets a
fresh process, and every other call carries on.

While fewer calls run than there are slots (a sweep's last configs, the end of a halving round), the cores
of the idle slots are lent to the busy ones: the backend keeps a file holding the cores shared out over
the calls running now, which its workers' thread governors read at every epoch (src/experiment/threads.py).

joblib documents `register_parallel_backend` but not the backend API itself, so this module is the one
place that depends on it (`ParallelBackendBase`, `submit` with a callback, the retrieve-callback pair,
`BatchedCalls.items`). pyproject.toml pins joblib to the versions tests/unit/test_slots.py checked.
"""

import collections
import contextlib
import functools
import logging
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from joblib import cpu_count
from joblib.parallel import ParallelBackendBase
from loky import BrokenProcessPool, ProcessPoolExecutor

from src import scratch
from src.experiment.threads import LENT_VARIABLE

log = logging.getLogger("netsweep.sweep")
LEAK_LIMIT_BYTES = 64 * 2**30  # see _new_slot
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class WorkerDied:
    """Stands in for the result of a call whose worker process died before returning."""

    args: tuple
    reason: str


def _report_warm_up_failure(future: Future) -> None:
    """A warm-up that fails costs nothing but its head start; say why, for whoever looks at the debug log."""
    if not future.cancelled() and future.exception() is not None:
        log.debug(f"worker warm-up failed: {future.exception()!r}")


LENT_KIND = "netsweep-threads-"  # the lent-threads file's name starts so (src/scratch.py)


class ProcessSlotsBackend(ParallelBackendBase):
    """n independent single-process loky executors, fed from one queue (register it with joblib, or
    pass an instance to `parallel_config(backend=...)`)."""

    supports_retrieve_callback = True

    def __init__(self, threads: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.threads = threads  # BLAS/OpenMP threads each worker process starts with (None: unlimited)
        self._slots: list[ProcessPoolExecutor] = []  # slot index -> its executor
        self._idle: list[int] = []  # indices of slots with nothing to run
        self._waiting: collections.deque[tuple[Any, Future[Any]]] = collections.deque()  # not yet in a slot
        self._lock = threading.RLock()  # a slot's callback can run inside _start_waiting, on this thread
        self.parallel = None
        self._lent: str | None = None  # the file of threads lent to each busy slot (with `threads` set)

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 has no meaning")
        return max(cpu_count() + 1 + n_jobs, 1) if n_jobs < 0 else n_jobs

    def configure(self, n_jobs=1, parallel=None, **_):
        n_jobs = self.effective_n_jobs(n_jobs)
        with self._lock:
            if self.threads and self._lent is None:
                self._lent = scratch.make_file(LENT_KIND)
            if len(self._slots) != n_jobs:
                self._shutdown_slots()
                self._slots = [self._new_slot() for _ in range(n_jobs)]
                self._idle = list(range(n_jobs))
            self._lend()
        self.parallel = parallel
        return n_jobs

    def _lend(self) -> None:
        """Write the threads each busy slot may use now: the cores shared out over the calls running."""
        if self._lent is None:
            return
        busy = len(self._slots) - len(self._idle)
        share = max(self.threads or 1, cpu_count() // max(1, busy))
        staging = f"{self._lent}.next"  # written under the lock: one writer at a time
        try:
            with open(staging, "w") as handle:
                handle.write(str(share))
            os.replace(staging, self._lent)  # whole: a worker never reads half a number
        except OSError as exc:  # only a hint: workers that cannot read it use their own share
            log.debug(f"could not write the threads lent to busy workers: {exc!r}")
            with contextlib.suppress(OSError):
                os.remove(staging)

    def _new_slot(self) -> ProcessPoolExecutor:
        env = {name: str(self.threads) for name in THREAD_VARIABLES} if self.threads else {}
        # loky restarts a worker whose memory grew by 300 MB since its first call, taking that for a leak.
        # Ours grow on purpose: a worker keeps the dataset it decoded for the next config (warmed up first,
        # a worker would otherwise be restarted after every Fashion-MNIST config and read everything again).
        env["LOKY_MAX_MEMORY_LEAK_SIZE"] = str(LEAK_LIMIT_BYTES)
        if self._lent is not None:
            env[LENT_VARIABLE] = self._lent
        return ProcessPoolExecutor(max_workers=1, env=env)

    def submit(self, func, callback=None):
        future: Future[Any] = Future()
        if callback is not None:
            future.add_done_callback(callback)
        with self._lock:
            self._waiting.append((func, future))
        self._start_waiting()
        return future

    def _start_waiting(self) -> None:
        with self._lock:
            started = bool(self._idle and self._waiting)
            while self._idle and self._waiting:
                slot = self._idle.pop()
                batch, future = self._waiting.popleft()
                executor = self._slots[slot]
                inner = executor.submit(batch)
                inner.add_done_callback(functools.partial(self._done, slot, executor, batch, future))
            if started:
                self._lend()

    def _done(self, slot, executor, batch, future, inner) -> None:
        died = False
        try:
            future.set_result(inner.result())
        except BrokenProcessPool as exc:  # the slot's process died: only this batch is lost
            reason = str(exc).splitlines()[0]
            future.set_result([WorkerDied(args, reason) for _, args, _ in batch.items])
            died = True
        except BaseException as exc:
            future.set_exception(exc)
        with self._lock:
            if slot >= len(self._slots) or self._slots[slot] is not executor:  # stopped or replaced meanwhile
                return  # (an aborted executor's calls fail later, from loky's thread): nothing to hand back
            if died:
                self._slots[slot] = self._new_slot()
            self._idle.append(slot)
            if not self._waiting:  # a slot left idle: its cores go to the calls still running
                self._lend()
        self._start_waiting()

    def warm_up(self, function) -> None:
        """Start every slot's process now and have it run `function()` before its first call."""
        with self._lock:
            for executor in self._slots:
                executor.submit(function).add_done_callback(_report_warm_up_failure)

    def retrieve_result_callback(self, future):
        return future.result()

    def abort_everything(self, ensure_ready=True):
        """Ctrl-C or an error in the caller: stop every process now."""
        with self._lock:
            self._waiting.clear()
            self._shutdown_slots()
            n_jobs = len(self._slots)
            self._slots, self._idle = [], []
        if ensure_ready and n_jobs:
            self.configure(n_jobs=n_jobs, parallel=self.parallel)

    def stop(self) -> None:
        """Stop the idle processes at once (they would otherwise linger until interpreter exit)."""
        with self._lock:
            self._shutdown_slots()
            self._slots, self._idle = [], []
            if self._lent is not None:
                with contextlib.suppress(OSError):
                    os.remove(self._lent)
                scratch.release(self._lent)
                self._lent = None

    def _shutdown_slots(self) -> None:
        for executor in self._slots:
            executor.shutdown(wait=False, kill_workers=True)
