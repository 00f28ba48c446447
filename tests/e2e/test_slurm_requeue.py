"""A preempted job that Slurm requeues (`scontrol requeue`: what preemption with `--requeue` does) rejoins the
sweep when it starts again, and its config continues there from its checkpoint in the same run. Slurm holds a
requeued job back for two minutes (its credentials' lifetime); dask-jobqueue alone cancels it 15 s after its
worker left and submits another job in its place."""

import re
import time

import pytest

from ..helpers import run_cli, wait_for
from .slurm_cluster import SWEEP, epochs, killed, no_jobs_left, slurm_cluster, sweep_runs, training  # noqa: F401

pytestmark = pytest.mark.slow

LOST_WORKER_TIMEOUT_S = 15  # dask's distributed.deploy.lost-worker-timeout


def test_a_requeued_job_rejoins_the_sweep_and_its_config_continues_in_it(slurm_cluster, tmp_path):  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "epochs=300", "threads=1", "hydra.launcher.n_jobs=1", *SWEEP]  # slurm.requeue=true by default
    sweep = run_cli(args, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)}, background=True)
    (run,) = wait_for(lambda: training(uri, 10))
    job = run.data.tags["slurm_job_id"]
    slurm_cluster.run("scontrol", "requeue", job)
    wait_for(lambda: killed(uri, run.info.run_id), timeout=30, every_s=0.2)  # its SIGTERM: KILLED at a step
    time.sleep(LOST_WORKER_TIMEOUT_S + 3)
    assert slurm_cluster.job_state(job) == "PENDING"  # requeued, held back by Slurm, and not cancelled
    slurm_cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")  # start it now, not in 2 minutes
    stdout, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, stderr
    assert "[1/1 configs done]" in stdout and "Traceback" not in stderr
    view, (continued,) = sweep_runs(uri)
    assert continued.info.run_id == run.info.run_id and continued.data.tags["outcome"] == "finished"
    assert continued.data.tags["slurm_job_id"] == job  # it went on in the requeued job ...
    assert epochs(view, continued) == list(range(1, 301))  # ... each epoch logged once
    restarts = re.search(r"Restarts=(\d+)", slurm_cluster.run("scontrol", "show", "job", job).stdout)
    assert restarts is not None and int(restarts.group(1)) >= 1
    assert {p.name for p in (tmp_path / "slurm-logs").iterdir()} == {f"dask-worker-{job}.out", f"dask-worker-{job}.err"}
    no_jobs_left(slurm_cluster)
