"""Where sweep jobs run: joblib on a local process pool (loky) or on an existing distributed engine.

A `WorkerPool` runs (function, args) calls and yields their results in completion order, whatever the
backend, so the sweep logic never depends on where jobs run. It can start its workers early (`warm_up`)
so that their start-up overlaps with what the parent process still has to do.
"""

import os

from joblib import Parallel, cpu_count, delayed, parallel_config

from src.config import ConfigError

BACKENDS = ("loky", "dask")


def effective_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """n_jobs <= 0 means one per core (joblib's -1); never more workers than tasks."""
    workers = cpu_count() if n_jobs <= 0 else n_jobs
    return max(1, min(workers, n_tasks))


def worker_threads(n_workers: int) -> int:
    """BLAS/OpenMP threads per worker: the cores shared out, so parallel configs do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // n_workers)


class WorkerPool:
    """joblib's Parallel, kept open across calls; n_workers == 1 runs calls in this process."""

    def __init__(self, settings, n_tasks: int):
        if settings.backend not in BACKENDS:
            raise ConfigError(f"hydra.launcher.backend={settings.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        if settings.backend != "loky":
            raise ConfigError(f"hydra.launcher.backend={settings.backend} is not available yet; use loky")
        self.n_workers = effective_n_jobs(settings.n_jobs, n_tasks)
        self.threads = worker_threads(self.n_workers)
        self._config = self._parallel = None

    def __enter__(self) -> "WorkerPool":
        self._open()
        return self

    def _open(self) -> None:
        self._config = parallel_config(backend="loky", n_jobs=self.n_workers, inner_max_num_threads=self.threads)
        self._config.__enter__()
        self._parallel = Parallel(return_as="generator_unordered")
        self._parallel.__enter__()

    def __exit__(self, *exc_info) -> None:
        self._parallel.__exit__(*exc_info)
        self._config.__exit__(*exc_info)

    def stop_workers(self) -> None:
        """Stop the idle workers now. joblib keeps them for reuse and stops them at interpreter exit,
        where each runs its own slow teardown; a finished sweep has nothing left for them to do."""
        from joblib.externals.loky import reusable_executor

        executor = getattr(reusable_executor, "_executor", None)  # loky's process-wide pool, if any
        if executor is not None:
            executor.shutdown(wait=False, kill_workers=True)

    def restart(self) -> None:
        """A fresh pool after a worker died (joblib cannot reuse a broken one)."""
        self.__exit__(None, None, None)
        self._open()

    def run(self, calls):
        """Start (function, args) calls at once; iterate the returned generator for results as they end."""
        return self._parallel(delayed(function)(*args) for function, args in calls)

    def warm_up(self, function, args: tuple):
        """Run `function(*args)` once per worker (imports, data) while the caller goes on; None in-process."""
        if self.n_workers == 1:
            return None
        return self.run([(function, args)] * self.n_workers)
