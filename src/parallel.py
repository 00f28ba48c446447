"""Where sweep jobs run: joblib on a local process pool (loky) or on an existing distributed engine.

`backend_context` yields a function that takes (function, args) pairs and yields their results in
completion order, whatever the backend, so the sweep logic never depends on where jobs run.
"""

import os
from contextlib import contextmanager

from joblib import Parallel, cpu_count, delayed, parallel_config

from src.config import ConfigError

BACKENDS = ("loky", "dask")


def effective_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """n_jobs <= 0 means one per core (joblib's -1); never more workers than tasks."""
    workers = cpu_count() if n_jobs <= 0 else n_jobs
    return max(1, min(workers, n_tasks))


def worker_threads(n_jobs: int, n_tasks: int) -> int:
    """BLAS/OpenMP threads per worker: the cores shared out, so parallel configs do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // effective_n_jobs(n_jobs, n_tasks))


@contextmanager
def backend_context(settings, n_tasks: int, threads: int):
    n_jobs = effective_n_jobs(settings.n_jobs, n_tasks)
    if settings.backend not in BACKENDS:
        raise ConfigError(f"hydra.launcher.backend={settings.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if settings.backend == "loky":
        with parallel_config(backend="loky", n_jobs=n_jobs, inner_max_num_threads=threads):
            parallel = Parallel(return_as="generator_unordered")
            yield lambda calls: parallel(delayed(function)(*args) for function, args in calls)
        return
    raise ConfigError("hydra.launcher.backend=dask is not available yet; use loky")
