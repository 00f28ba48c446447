"""Slurm jobs as the sweep's workers: dask-jobqueue's `SLURMCluster`, each job one Dask worker that trains
configs one after another, so the sweep keeps its Dask path (joblib's dask backend) on a Slurm cluster; and
how any Dask worker of a sweep ends on SIGTERM (`StopOnSigterm`).

Why dask-jobqueue rather than one job per config (submitit, Hydra's submitit launcher): a job pays Python's
and netsweep's start-up once for many configs, decisions such as pruning reach running configs through the
tracking store as on any backend, and a job lost to `scancel`, a time limit or preemption costs only the
epoch its config was training: Dask gives the config to another worker (the cluster replaces the lost job),
which continues it from its checkpoint in the same run.

This module imports Dask's `distributed` (about a second): src/sweep/pool.py imports it only for the dask
and slurm backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import dask
from dask.utils import parse_timedelta
from distributed import Client, Reschedule, WorkerPlugin, as_completed
from distributed.core import Status
from distributed.deploy.spec import SpecCluster

from src import interrupts
from src.errors import ConfigError
from src.sweep.settings import SlurmSettings

STOP_PLUGIN = "netsweep-stop-on-sigterm"  # the worker plugin's name on the scheduler
SLURM_WAITING = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SUSPENDED",
}
STOP_GRACE_S = 60.0  # the longest a worker waits after SIGTERM for its configs to stop (Slurm's KillWait is
#                      30 s by default: its SIGKILL usually comes first)


class StopOnSigterm(WorkerPlugin):
    """SIGTERM on a sweep's Dask worker (its Slurm job cancelled, out of time or preempted; `kill` of a worker):
    the configs training on its threads stop at their next step (`interrupts.request_stop`), each run ends
    `killed` with its checkpoint whole, and its task goes back to the scheduler (`handed_back_on_stop`),
    which gives it to another worker, where it continues from that checkpoint. Meanwhile the worker takes no
    new task (Dask's "closing gracefully"); once nothing runs on it, or after `grace_s`, it closes as Dask
    closes a worker. Without this, `dask worker --no-nanny` ends its process at once, cutting the training
    wherever it is and leaving its run RUNNING. A second SIGTERM gets Dask's own handling.

    A worker that closes for another reason while a config trains on it (its scheduler closed: the sweep ended
    and cancels its jobs, whose SIGTERM may come a moment later) stops that training the same way: Dask waits for
    its threads when it closes, and a training never told to stop would be cut by Slurm's SIGKILL instead."""

    idempotent = True  # one per worker, however many sweeps register it
    name = STOP_PLUGIN

    def __init__(self, grace_s: float = STOP_GRACE_S):
        self.grace_s = grace_s
        self._worker: Any = None
        self._previous: Any = signal.SIG_DFL
        self._closing: asyncio.Future[None] | None = None

    def setup(self, worker: Any) -> None:
        """Runs on the worker's event loop: with `--no-nanny` (Slurm's jobs) or under a nanny, the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only: a worker run elsewhere (in a test) keeps Dask's handling
        self._worker = worker
        self._previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def teardown(self, worker: Any) -> None:
        """Runs when the worker closes, or when the sweep takes the plugin off a cluster that outlives it."""
        if self._worker is None:
            return  # `setup` left this worker to Dask's handling
        if worker.status in (Status.closing, Status.closing_gracefully):  # its process ends once it has closed
            if not interrupts.stop_requested():  # (a SIGTERM's stop keeps its reason)
                interrupts.request_stop("the Dask worker is closing")
            return  # and a SIGTERM that comes meanwhile is still ours: it must not end the process mid-step
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == self._on_sigterm
        ):
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # A signal handler: nothing that blocks or logs; the closing runs on the worker's loop.
        interrupts.request_stop(signal.Signals(signum).name)
        signal.signal(signal.SIGTERM, self._previous)
        with contextlib.suppress(RuntimeError):  # the worker's loop has closed: it is ending already
            self._worker.loop.asyncio_loop.call_soon_threadsafe(self._start_closing, signum)

    def _start_closing(self, signum: int) -> None:
        self._closing = asyncio.ensure_future(self._close_when_stopped(signum))

    async def _close_when_stopped(self, signum: int) -> None:
        worker = self._worker
        if worker.status in (Status.running, Status.paused):
            worker.status = Status.closing_gracefully  # no task starts here now, and the scheduler sends none
        deadline = time.monotonic() + self.grace_s
        while worker.state.executing_count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await worker.close(reason=f"signal-{signum}")


def handed_back_on_stop(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` on a Dask worker; interrupted because the worker is ending (`StopOnSigterm`), the call
    goes back to the scheduler (Dask's `Reschedule`) rather than failing: another worker runs it, and its
    config continues there from its checkpoint in the same run. Any other interrupt passes through."""
    try:
        return function(*args)
    except KeyboardInterrupt:
        if not interrupts.stop_requested():
            raise
        raise Reschedule() from None


class ClusterCalls:
    """(function, args) calls as tasks on a Dask cluster, their results in completion order; a task whose
    call raised fails its iteration with that exception (as a broken local pool does). Not joblib's Dask
    backend: joblib returns whatever a task raised as the task's value, so no task could hand itself back
    to the scheduler (`handed_back_on_stop`)."""

    def __init__(self, client: Any):
        self.client = client
        self._out: list[Any] = []  # futures not yet done

    def start(self, calls: Iterable[tuple[Callable[..., Any], tuple[Any, ...]]]) -> Iterator[Any]:
        """Submit every call now; iterate the returned generator for their results as they end."""
        futures = [self.client.submit(handed_back_on_stop, function, *args, pure=False) for function, args in calls]
        self._out = [f for f in self._out if not f.done()] + futures
        return self._results(futures)

    def _results(self, futures: list[Any]) -> Iterator[Any]:
        for future in as_completed(futures, loop=self.client.loop):  # the loop: the client is not Dask's default
            yield future.result()

    def cancel(self) -> None:
        """Cancel the calls still out (a running one's thread trains on: Dask cannot stop a thread)."""
        out, self._out = [f for f in self._out if not f.done()], []
        if out:
            self.client.cancel(out)


def stop_on_sigterm(client: Any) -> None:
    """Give every worker of `client`'s cluster, now and joining later, `StopOnSigterm`."""
    client.register_plugin(StopOnSigterm(), name=STOP_PLUGIN)


def forget_sigterm(client: Any) -> None:
    """Take `StopOnSigterm` off the workers again (a Dask cluster that outlives the sweep)."""
    with contextlib.suppress(Exception):  # the cluster is going anyway
        client.unregister_worker_plugin(STOP_PLUGIN)


def slurm_state(job_id: object) -> str:
    """The job's state as squeue says it (PENDING, RUNNING, ...); '' once Slurm has ended it (or squeue fails)."""
    try:
        listed = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return listed.stdout.strip() if listed.returncode == 0 else ""


def _lost_job_s() -> float:
    """Dask's `distributed.deploy.lost-worker-timeout`: how long after its worker left a job is looked at."""
    return float(parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout")))


def _requeue_aware(base: type) -> type:
    """dask-jobqueue's SLURMCluster (`base`, imported late), keeping a job Slurm requeued."""

    class SweepSLURMCluster(base):
        """SLURMCluster, but a job whose worker left is cancelled (and replaced by adapt) only once Slurm has
        ended it. dask-jobqueue cancels it `lost-worker-timeout` (15 s) after its worker left; a job that Slurm
        requeued (preempted, `scontrol requeue`) is PENDING then, held back two minutes or more, and would be
        cancelled rather than rejoin the sweep when it starts again."""

        def _update_worker_status(self, op: str, msg: Any) -> None:
            if op != "remove":
                super()._update_worker_status(op, msg)
                return
            name = self.scheduler_info["workers"][msg]["name"]
            super(SpecCluster, self)._update_worker_status(op, msg)  # type: ignore[misc]  # not SpecCluster's timer
            asyncio.get_running_loop().call_later(_lost_job_s(), self._replace_if_ended, name)

        def _replace_if_ended(self, name: str) -> None:
            job = self.workers.get(name)
            if job is None or any(w["name"] == name for w in self.scheduler_info["workers"].values()):
                return  # replaced already, or its worker is back
            if slurm_state(job.job_id) in SLURM_WAITING:  # requeued (or still ending): look again later
                asyncio.get_running_loop().call_later(_lost_job_s(), self._replace_if_ended, name)
                return
            self._futures.add(asyncio.ensure_future(job.close()))  # as SpecCluster does: adapt submits another
            del self.workers[name]

    return SweepSLURMCluster


def slurm_cluster(settings: SlurmSettings, jobs: int) -> tuple[Any, Any]:
    """(cluster, client): `jobs` Slurm jobs submitted now, each one Dask worker; returns once the first one
    runs (the others join as the queue starts them: configs wait for a worker at the scheduler)."""
    try:
        from dask_jobqueue import SLURMCluster as JobqueueCluster  # deferred: optional
    except ImportError:
        raise ConfigError(
            "hydra.launcher.backend=slurm needs dask-jobqueue: pip install 'netsweep[slurm]' "
            "(or pip install dask-jobqueue)"
        ) from None
    logging.getLogger("distributed").setLevel(logging.WARNING)
    scheduler = {"dashboard_address": ":0", **({"host": settings.scheduler_host} if settings.scheduler_host else {})}
    try:
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):  # a config waits at the scheduler
            # for a free job rather than queueing behind another config in a busy one (1.1: two per job)
            cluster = _requeue_aware(JobqueueCluster)(
                queue=settings.partition,
                account=settings.account,
                walltime=settings.time,
                cores=1,  # one Dask thread: a job trains one config at a time ...
                job_cpu=settings.cpus_per_job,  # ... with the CPUs it asked Slurm for
                processes=1,
                memory=settings.mem_per_job,
                nanny=False,  # the worker is the job's process (no nanny to hold BLAS to one thread)
                python=f"exec {sys.executable}",  # exec: Slurm's signals reach the worker itself
                job_script_prologue=settings.setup,
                job_extra_directives=settings.directives(),
                log_directory=str(Path(settings.log_dir).expanduser().resolve()),
                scheduler_options=scheduler,
                silence_logs="error",
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"hydra.launcher.backend=slurm: could not set up the Slurm jobs ({exc})") from None
    client = Client(cluster, set_as_default=False)
    stop_on_sigterm(client)  # before any job's worker joins
    cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)  # submits them now, and replaces a job that is lost
    _wait_for_a_worker(client, cluster, jobs, settings)
    return cluster, client


def _wait_for_a_worker(client: Any, cluster: Any, jobs: int, settings: SlurmSettings) -> None:
    """Return once a job's worker has joined; refuse the sweep (cancelling its jobs) when none has within
    `start_timeout_s`, which is what a job that fails at once (a wrong partition, a setup line that
    fails) looks like from here."""
    print(f"[sweep] submitted {jobs} Slurm job(s); waiting for the first to start (squeue shows them)", flush=True)
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if client.scheduler_info()["workers"]:
            return
        time.sleep(0.25)
    client.close()
    cluster.close()
    raise ConfigError(
        f"no Slurm job of the sweep started within hydra.launcher.slurm.start_timeout_s="
        f"{settings.start_timeout_s:g}: see squeue and the jobs' logs in {settings.log_dir}, or wait longer"
    )
