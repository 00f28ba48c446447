"""Where sweep jobs run: joblib on a local process pool (loky), or tasks on a Dask cluster, whose workers may
be Slurm jobs (src/sweep/slurm.py).

A `WorkerPool` runs (function, args) calls and yields their results in completion order, whatever the
backend, so the sweep logic never depends on where jobs run. A call whose local worker process died
yields a `WorkerDied` in place of its result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from joblib import Parallel, cpu_count, delayed, parallel_config

from src import interrupts
from src.errors import ConfigError
from src.sweep.settings import Backend, LauncherSettings
from src.sweep.slots import ProcessSlotsBackend
from src.tracking.opening import SQLITE_PREFIX, is_local_file

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
SLURM_JOBS = 16  # n_jobs=-1 on Slurm: one job per config, at most this many at once
# Filesystems that other machines reach over the network (a FUSE one as fuse.<name>: fuse.sshfs, fuse.glusterfs)
NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "sshfs", "9p", "afs",
    "panfs", "wekafs", "pvfs2", "orangefs", "juicefs", "s3fs", "davfs",
}  # fmt: skip


def effective_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """n_jobs <= 0 means one per core (joblib's -1); never more workers than tasks."""
    workers = cpu_count() if n_jobs <= 0 else n_jobs
    return max(1, min(workers, n_tasks))


def worker_threads(n_workers: int) -> int:
    """BLAS/OpenMP threads per worker: the cores shared out, so parallel configs do not oversubscribe."""
    return max(1, cpu_count() // n_workers)


def _this_machine() -> set[str]:
    names = set(LOCAL_HOSTS) | {socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):
        names |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    return names


def remote_hosts(worker_addresses: Iterable[str]) -> list[str]:
    """The hosts among Dask worker addresses (tcp://HOST:PORT) that are not this machine."""
    here = _this_machine()
    hosts = {urlparse(a).hostname for a in worker_addresses}
    return sorted(host for host in hosts if host is not None and host not in here)


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The type of the network filesystem `path` is on (nfs4, lustre, ...), None for a local disk or where
    Linux's mount table cannot be read. `mounts`: that table's text (/proc/self/mounts)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target, best, kind = os.path.realpath(path), "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind if kind.removeprefix("fuse.") in NETWORK_FILESYSTEMS else None


def _dask_workers() -> Any:
    """src/sweep/slurm.py, which imports Dask's distributed (an optional dependency, ~1 s to import)."""
    try:
        from src.sweep import slurm  # deferred: it imports distributed (optional, ~1 s)
    except ImportError:
        raise ConfigError(
            "hydra.launcher.backend=dask or slurm needs Dask: pip install 'netsweep[dask]' (or 'netsweep[slurm]')"
        ) from None
    return slurm


class WorkerPool:
    """joblib's Parallel kept open across calls (loky), or Dask tasks (dask, slurm; `slurm.ClusterCalls`).

    loky: `n_jobs` local worker processes, each its own loky executor (`ProcessSlotsBackend`), so one
    dying costs only its config; with n_jobs=1, jobs run in this process.
    dask: the cluster at `address`, or a LocalCluster of `n_jobs` single-threaded workers started and
    stopped with the pool. A worker's SIGTERM stops its configs at a step and hands them to another worker.
    slurm: `n_jobs` Slurm jobs (-1: one per config, at most SLURM_JOBS), each a Dask worker, submitted when
    the pool opens, replaced when one is lost, and cancelled when it closes (src/sweep/slurm.py).
    """

    def __init__(self, settings: LauncherSettings, n_tasks: int):
        self.settings = settings  # checked as they were made
        most = SLURM_JOBS if settings.backend == Backend.slurm and settings.n_jobs <= 0 else settings.n_jobs
        self.n_workers = effective_n_jobs(most, n_tasks)
        self.threads = worker_threads(self.n_workers) if settings.backend == Backend.loky else None
        self._config: Any = None  # joblib's parallel_config, entered while the pool is open
        self._parallel: Parallel | None = None
        self._client: Any = None  # distributed.Client (an optional dependency)
        self._cluster: Any = None  # distributed.LocalCluster, when the pool started one
        self._slots: ProcessSlotsBackend | None = None
        self._tasks: Any = None  # slurm.ClusterCalls: the calls on a Dask cluster

    def open(self) -> WorkerPool:
        """Connect to the engine (a Dask scheduler, a LocalCluster or Slurm jobs started here) and start
        the workers."""
        if self.settings.backend == Backend.dask:
            self._connect_dask()
            _dask_workers().stop_on_sigterm(self._client)  # a worker's SIGTERM ends its configs at a step
        elif self.settings.backend == Backend.slurm:
            self._cluster, self._client = _dask_workers().slurm_cluster(self.settings.slurm, self.n_workers)
        if self._client is not None:  # Dask's in-process scheduler takes over SIGINT: Ctrl-C ends the sweep
            interrupts.install()
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
        if self._client is not None:  # every call goes to the cluster, even with one worker there (or none yet)
            self._tasks = _dask_workers().ClusterCalls(self._client)
            return
        if self.settings.backend == Backend.loky and self.n_workers == 1:  # joblib runs it in this process
            self._config = parallel_config(backend="loky", n_jobs=1)
        else:
            self._slots = self._slots or ProcessSlotsBackend(threads=self.threads)
            self._config = parallel_config(backend=self._slots, n_jobs=self.n_workers)
        self._config.__enter__()
        self._parallel = Parallel(return_as="generator_unordered")
        self._parallel.__enter__()

    @property
    def _running(self) -> Parallel:
        if self._parallel is None:
            raise RuntimeError("the pool is not open: call `open` first")
        return self._parallel

    def close(self, abort: bool = False) -> None:
        """Stop the workers now (rather than at interpreter exit, where each would run its own slow
        teardown); `abort`: the caller was interrupted, so running jobs are killed. A Dask cluster's workers
        are not ours to stop (a LocalCluster stops with the pool)."""
        self._leave(abort)
        if self._slots is not None:
            self._slots.stop()
        if self._client is not None:
            if self._cluster is None:  # a cluster that outlives the sweep: its workers' SIGTERM is theirs again
                _dask_workers().forget_sigterm(self._client)
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def check_store(self, tracking_uri: str | None) -> None:
        """Refuse a tracking store that workers on other machines could not write to, or not safely: a file of
        this machine, or a SQLite file on a network filesystem with Slurm jobs as workers (bench/sqlite_writers.py
        measured writes lost and stores corrupted when writers on two machines share one)."""
        if not tracking_uri or self._client is None or urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
            return  # no Dask cluster, or a server every worker can reach
        if not is_local_file(tracking_uri):
            return
        shared = network_filesystem(Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent)
        if shared and tracking_uri.startswith(SQLITE_PREFIX) and self.settings.backend == Backend.slurm:
            raise ConfigError(
                f"the tracking store {tracking_uri} is a SQLite file on a network filesystem ({shared}), which "
                "Slurm jobs on other machines cannot share safely: start a tracking server on this machine "
                "(mlflow server --backend-store-uri sqlite:///PATH/ON/LOCAL/DISK/mlflow.db --host 0.0.0.0) and set "
                "MLFLOW_TRACKING_URI=http://HOST:5000"
            )
        elsewhere = remote_hosts(self._client.scheduler_info()["workers"])
        if elsewhere:
            raise ConfigError(
                f"the tracking store {tracking_uri} is a local file, but Dask workers run on "
                f"{', '.join(elsewhere)}: start a tracking server (mlflow server ...) and set "
                "MLFLOW_TRACKING_URI=http://HOST:PORT so every worker can reach it"
            )

    def warm_up(self, function: Callable[[], None]) -> None:
        """Start the local worker processes now, each running `function()` (imports) before its first job,
        so their start-up overlaps with what the parent still has to do. Dask's workers are already up."""
        if self._slots is not None:
            self._slots.warm_up(function)

    def restart(self) -> None:
        """A fresh pool after a worker died (joblib cannot reuse a broken one); on a Dask cluster, the calls
        still out are cancelled (the caller hands out again those that never started)."""
        self._leave(abort=False)
        self._open()

    def _leave(self, abort: bool) -> None:
        if self._tasks is not None:
            self._tasks.cancel()
            return
        exc_info = (KeyboardInterrupt, KeyboardInterrupt(), None) if abort else (None, None, None)
        self._running.__exit__(*exc_info)
        self._config.__exit__(*exc_info)

    def run(self, calls: Iterable[tuple[Callable[..., Any], tuple[Any, ...]]]) -> Iterator[Any]:
        """Start (function, args) calls at once; iterate the returned generator for results as they end."""
        if self._tasks is not None:
            cluster_results: Iterator[Any] = self._tasks.start(calls)
            return cluster_results
        results: Iterator[Any] = self._running(delayed(function)(*args) for function, args in calls)
        return results
