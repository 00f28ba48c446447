"""Sweeps on a real single-node Slurm cluster (.ci/slurm-cluster): configs trained in Slurm jobs, two at
once; a job cancelled or out of time costs its config only the step it was training: the job's SIGTERM ends
the run KILLED at a step with its checkpoint whole, and the config goes on from it in the same run in another
job."""

import signal
import subprocess

import pytest

from src.experiment import checkpoints

from ..helpers import read_store, run_cli, wait_for
from .slurm_cluster import SWEEP, epochs, killed, no_jobs_left, slurm_cluster, sweep_runs, training  # noqa: F401

pytestmark = pytest.mark.slow


def test_a_sweep_trains_in_two_slurm_jobs_at_once_and_ends_them(slurm_cluster, tmp_path):  # noqa: F811
    grid = ["-m", "optimizer.lr=0.05,0.1", "model.decay=0,1e-4", "epochs=40", "hydra.launcher.n_jobs=2", *SWEEP]
    result = run_cli(grid, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)})
    assert result.returncode == 0, result.stderr
    assert "[4/4 configs done]" in result.stdout and "submitted 2 Slurm job(s)" in result.stdout
    view, runs = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(r.data.tags["outcome"] for r in runs) == ["finished"] * 4
    jobs = {r.data.tags["slurm_job_id"] for r in runs}
    assert len(jobs) == 2  # every config trained in one of the sweep's two jobs
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))  # two at once
    assert (tmp_path / "slurm-logs").is_dir()
    no_jobs_left(slurm_cluster)  # the jobs ended with the sweep


def test_a_cancelled_job_ends_its_run_killed_at_a_step_and_the_config_continues_in_another(
    slurm_cluster,  # noqa: F811
    tmp_path,
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = ["-m", "optimizer.lr=0.05,0.1", "epochs=1200", "threads=1", "hydra.launcher.n_jobs=2", *SWEEP]
    sweep = run_cli(grid, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)}, background=True)
    victim = wait_for(lambda: training(uri, 30))[0]
    job = victim.data.tags["slurm_job_id"]
    slurm_cluster.run("scancel", job)
    # the job's SIGTERM stops the training at a step: the run ends KILLED, its checkpoint whole, before it goes
    # on (the other job is busy, and the replacement takes 15 s or more)
    stopped = wait_for(lambda: killed(uri, victim.info.run_id), timeout=30, every_s=0.2)
    assert "SIGTERM" in stopped.data.tags["failure_reason"], stopped.data.tags
    kept = checkpoints.path_for(tmp_path / "netsweep-checkpoints", victim.info.run_id)
    assert kept.is_file() and checkpoints.leftovers(kept) == []
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr
    assert "[2/2 configs done]" in stdout and "Traceback" not in stderr
    view, runs = sweep_runs(uri)
    assert sorted(r.data.tags["outcome"] for r in runs) == ["finished"] * 2  # nothing to rerun
    continued = next(r for r in runs if r.info.run_id == victim.info.run_id)
    assert continued.data.tags["slurm_job_id"] != job  # it went on in another job ...
    assert epochs(view, continued) == list(range(1, 1201))  # ... in the same run, each epoch logged once
    assert list((tmp_path / "netsweep-checkpoints").iterdir()) == []
    no_jobs_left(slurm_cluster)


def test_a_job_out_of_time_hands_its_config_on_to_the_next_job(slurm_cluster, tmp_path):  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "epochs=100000", "threads=1", "hydra.launcher.slurm.time=00:01:00", *SWEEP]
    sweep = run_cli(args, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)}, background=True)
    (first,) = wait_for(lambda: training(uri, 5))
    job = first.data.tags["slurm_job_id"]

    def in_the_next_job():
        view, (run,) = sweep_runs(uri)
        return (view, run) if run.data.tags.get("slurm_job_id") not in (None, job) else None

    view, run = wait_for(in_the_next_job, timeout=240)  # Slurm checks time limits about every 30 s
    state = slurm_cluster.run("scontrol", "show", "job", job, check=False).stdout
    assert "JobState=TIMEOUT" in state or "JobState=CANCELLED" in state or not state, state
    at_handover = len(epochs(view, run))
    wait_for(lambda: len(epochs(read_store(uri), run)) > at_handover + 10)  # training goes on there
    sweep.send_signal(signal.SIGINT)
    try:
        _, stderr = sweep.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        sweep.kill()
        raise
    assert sweep.returncode == 130, stderr
    no_jobs_left(slurm_cluster)  # the sweep's end cancelled the job: its SIGTERM stops the training at a step
    view = read_store(uri)
    logged = epochs(view, view.client.get_run(run.info.run_id))
    assert logged == list(range(1, len(logged) + 1))  # no epoch lost or logged twice across the jobs
    # the run keeps its one checkpoint, and nothing else: each job's SIGTERM (the time limit, then the sweep's
    # end) stopped the training at a step, never in the middle of writing it; it holds the last epoch logged
    path = checkpoints.path_for(tmp_path / "netsweep-checkpoints", run.info.run_id)
    assert list((tmp_path / "netsweep-checkpoints").iterdir()) == [path]
    kept = checkpoints.load(path, run.data.tags["config_hash"])
    assert kept is not None and kept.meta["epochs_done"] == len(logged), kept.meta
