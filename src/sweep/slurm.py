"""Slurm jobs as the sweep's workers: dask-jobqueue's `SLURMCluster`, each job one Dask worker that trains
configs one after another, so the sweep keeps its Dask path (joblib's dask backend) on a Slurm cluster.

Why dask-jobqueue rather than one job per config (submitit, Hydra's submitit launcher): a job pays Python's
and netsweep's start-up once for many configs, decisions such as pruning reach running configs through the
tracking store as on any backend, and a job lost to `scancel`, a time limit or preemption costs only the
epoch its config was training: Dask gives the config to another worker (the cluster replaces the lost job),
which continues it from its checkpoint in the same run.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from src.errors import ConfigError
from src.sweep.settings import SlurmSettings

SLURM_JOBS = 16  # n_jobs=-1 on Slurm: one job per config, at most this many at once


def slurm_cluster(settings: SlurmSettings, jobs: int) -> tuple[Any, Any]:
    """(cluster, client): `jobs` Slurm jobs submitted now, each one Dask worker; returns once the first one
    runs (the others join as the queue starts them: configs wait for a worker at the scheduler)."""
    try:
        from dask_jobqueue import SLURMCluster  # deferred: optional, and ~1 s to import
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "hydra.launcher.backend=slurm needs dask-jobqueue: pip install 'netsweep[slurm]' "
            "(or pip install dask-jobqueue)"
        ) from None
    logging.getLogger("distributed").setLevel(logging.WARNING)
    scheduler = {"dashboard_address": ":0", **({"host": settings.scheduler_host} if settings.scheduler_host else {})}
    try:
        cluster = SLURMCluster(
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
