"""Where sweep jobs run: joblib on a local process pool (loky) or on a Dask cluster.

A `WorkerPool` runs (function, args) calls and yields their results in completion order, whatever the
backend, so the sweep logic never depends on where jobs run. A call whose local worker process died
yields a `WorkerDied` in place of its result.
"""

import logging
import re
import socket
from urllib.parse import urlparse

from joblib import Parallel, cpu_count, delayed, parallel_config

from src.errors import ConfigError
from src.pruning import RULES
from src.sweep.slots import ProcessSlotsBackend
from src.tracking.store import is_local_file

BACKENDS = ("loky", "dask")
RESUME_CHOICES = ("true", "false", "except_pruned")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")  # fits in models:/<name>@best and registry filters
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def effective_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """n_jobs <= 0 means one per core (joblib's -1); never more workers than tasks."""
    workers = cpu_count() if n_jobs <= 0 else n_jobs
    return max(1, min(workers, n_tasks))


def worker_threads(n_workers: int) -> int:
    """BLAS/OpenMP threads per worker: the cores shared out, so parallel configs do not oversubscribe."""
    return max(1, cpu_count() // n_workers)


def _this_machine() -> set:
    names = set(LOCAL_HOSTS) | {socket.gethostname(), socket.getfqdn()}
    try:
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    return names


def remote_hosts(worker_addresses) -> list:
    """The hosts among Dask worker addresses (tcp://HOST:PORT) that are not this machine."""
    here = _this_machine()
    return sorted({urlparse(a).hostname for a in worker_addresses} - here - {None})


def check_settings(settings) -> None:
    """Reject launcher settings no pool could use, before the sweep records anything."""
    if settings.backend not in BACKENDS:
        raise ConfigError(f"hydra.launcher.backend={settings.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if settings.address and settings.backend != "dask":
        raise ConfigError(f"hydra.launcher.address={settings.address} is only used with hydra.launcher.backend=dask")
    if settings.n_jobs == 0:
        raise ConfigError("hydra.launcher.n_jobs=0 is invalid: use a number of workers >= 1, or -1 for one per core")
    choices = {"prune": RULES, "prune_by": ("config", "seed")}
    for key, allowed in choices.items():
        value = getattr(settings, key, allowed[0])
        if value not in allowed:
            raise ConfigError(f"hydra.launcher.{key}={value!r} is unknown; use one of {', '.join(allowed)}")
    if getattr(settings, "prune_min_epochs", 1) < 1:
        raise ConfigError(f"hydra.launcher.prune_min_epochs={settings.prune_min_epochs} is invalid: use an epoch >= 1")
    if getattr(settings, "prune_factor", 2) < 2:
        raise ConfigError(
            f"hydra.launcher.prune_factor={settings.prune_factor} is invalid: use 2 or more (asha keeps "
            "the top 1/factor at each rung)"
        )
    if str(getattr(settings, "resume", True)).lower() not in RESUME_CHOICES:
        raise ConfigError(f"hydra.launcher.resume={settings.resume!r} is unknown; use true, false or except_pruned")
    name = getattr(settings, "register_best", None)
    if name is not None and not MODEL_NAME.fullmatch(str(name)):
        raise ConfigError(
            f"hydra.launcher.register_best={name!r} is not a usable model name: use letters, digits, "
            "'-', '_', '.' and spaces (no '/', ':', '@' or quotes), e.g. fashion-net"
        )


class WorkerPool:
    """joblib's Parallel, kept open across calls.

    loky: `n_jobs` local worker processes, each its own loky executor (`ProcessSlotsBackend`), so one
    dying costs only its config; with n_jobs=1, jobs run in this process.
    dask: the cluster at `address`, or a LocalCluster of `n_jobs` single-threaded workers started and
    stopped with the pool.
    """

    def __init__(self, settings, n_tasks: int):
        check_settings(settings)
        self.settings = settings
        self.n_workers = effective_n_jobs(settings.n_jobs, n_tasks)
        self.threads = worker_threads(self.n_workers) if settings.backend == "loky" else None
        self._config = self._parallel = self._client = self._cluster = self._slots = None

    def open(self) -> "WorkerPool":
        """Connect to the engine (a Dask scheduler, or a LocalCluster started here) and start the workers."""
        if self.settings.backend == "dask":
            self._connect_dask()
        self._open()
        return self

    def _connect_dask(self) -> None:
        try:
            from distributed import Client, LocalCluster  # deferred: optional, and ~1 s to import
        except ImportError:
            raise ConfigError(
                "hydra.launcher.backend=dask needs Dask's distributed package: pip install distributed"
            ) from None
        logging.getLogger("distributed").setLevel(logging.WARNING)  # after the import, which sets its own level
        if self.settings.address:
            try:
                self._client = Client(self.settings.address, timeout=30, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"hydra.launcher.address={self.settings.address}: no Dask scheduler answered ({exc}); "
                    "start one with `dask scheduler` or fix the address"
                ) from None
        else:
            self._cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
            self._client = Client(self._cluster, set_as_default=False)

    def _open(self) -> None:
        if self.settings.backend == "loky" and self.n_workers == 1:  # joblib runs it in this process
            self._config = parallel_config(backend="loky", n_jobs=1)
        elif self.settings.backend == "loky":
            self._slots = self._slots or ProcessSlotsBackend(threads=self.threads)
            self._config = parallel_config(backend=self._slots, n_jobs=self.n_workers)
        else:
            self._config = parallel_config(backend="dask", client=self._client)
        self._config.__enter__()
        self._parallel = Parallel(return_as="generator_unordered")
        self._parallel.__enter__()

    def close(self, abort: bool = False) -> None:
        """Stop the workers now (rather than at interpreter exit, where each would run its own slow
        teardown); `abort`: the caller was interrupted, so running jobs are killed. A Dask cluster's workers
        are not ours to stop (a LocalCluster stops with the pool)."""
        exc_info = (KeyboardInterrupt, KeyboardInterrupt(), None) if abort else (None, None, None)
        self._parallel.__exit__(*exc_info)
        self._config.__exit__(*exc_info)
        if self._slots is not None:
            self._slots.stop()
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def check_store(self, tracking_uri: str) -> None:
        """Refuse a tracking store that workers on other machines could not write to."""
        if not tracking_uri or self._client is None or urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
            return  # no Dask cluster, or a server every worker can reach
        if is_local_file(tracking_uri):
            elsewhere = remote_hosts(self._client.scheduler_info()["workers"])
            if elsewhere:
                raise ConfigError(
                    f"the tracking store {tracking_uri} is a local file, but Dask workers run on "
                    f"{', '.join(elsewhere)}: start a tracking server (mlflow server ...) and set "
                    "MLFLOW_TRACKING_URI=http://HOST:PORT so every worker can reach it"
                )

    def warm_up(self, function) -> None:
        """Start the local worker processes now, each running `function()` (imports) before its first job,
        so their start-up overlaps with what the parent still has to do. Dask's workers are already up."""
        if self._slots is not None:
            self._slots.warm_up(function)

    def restart(self) -> None:
        """A fresh pool after a worker died (joblib cannot reuse a broken one)."""
        self._parallel.__exit__(None, None, None)
        self._config.__exit__(None, None, None)
        self._open()

    def run(self, calls):
        """Start (function, args) calls at once; iterate the returned generator for results as they end."""
        return self._parallel(delayed(function)(*args) for function, args in calls)
