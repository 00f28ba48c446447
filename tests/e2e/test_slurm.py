"""Sweeps on a real single-node Slurm cluster (.ci/slurm-cluster): configs trained in Slurm jobs, two at
once; a job cancelled or out of time costs its config only the epoch it was training, which goes on from
its checkpoint in the same run in another job."""

import signal
import subprocess

import pytest

from src.experiment import checkpoints

from ..helpers import read_store, run_cli, wait_for
from .slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow

SLURM = (
    "hydra.launcher.backend=slurm",
    "hydra.launcher.slurm.scheduler_host=127.0.0.1",  # tests listen on loopback only
    "hydra.launcher.slurm.mem_per_job=1G",
    "hydra.launcher.progress_interval_s=1",
)


def _children(uri):
    view = read_store(uri)
    return view, [r for r in view.runs if r.data.tags.get("netsweep.role") != "sweep"]


def _epochs(view, run):
    return sorted(m.step for m in view.client.get_metric_history(run.info.run_id, "val_acc"))


def _no_jobs_left(cluster):
    return wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip() or None, timeout=60)


def _training(uri, at_least):
    """The sweep's runs that logged `at_least` epochs, once every config has (None before)."""
    try:
        view, runs = _children(uri)
    except Exception:  # the store is being created
        return None
    return runs if runs and all(len(_epochs(view, r)) >= at_least for r in runs) else None


def test_a_sweep_trains_in_two_slurm_jobs_at_once_and_ends_them(slurm_cluster, tmp_path):  # noqa: F811
    grid = ["-m", "optimizer.lr=0.05,0.1", "model.decay=0,1e-4", "epochs=40", "hydra.launcher.n_jobs=2", *SLURM]
    result = run_cli(grid, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)})
    assert result.returncode == 0, result.stderr
    assert "[4/4 configs done]" in result.stdout and "submitted 2 Slurm job(s)" in result.stdout
    view, runs = _children(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(r.data.tags["outcome"] for r in runs) == ["finished"] * 4
    jobs = {r.data.tags["slurm_job_id"] for r in runs}
    assert len(jobs) == 2  # every config trained in one of the sweep's two jobs
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))  # two at once
    assert (tmp_path / "slurm-logs").is_dir()
    _no_jobs_left(slurm_cluster)  # the jobs ended with the sweep


def test_a_cancelled_job_costs_its_config_one_epoch_and_the_config_continues_in_another(
    slurm_cluster,  # noqa: F811
    tmp_path,
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = ["-m", "optimizer.lr=0.05,0.1", "epochs=1200", "threads=1", "hydra.launcher.n_jobs=2", *SLURM]
    sweep = run_cli(grid, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)}, background=True)
    victim = wait_for(lambda: _training(uri, 30))[0]
    job = victim.data.tags["slurm_job_id"]
    slurm_cluster.run("scancel", job)
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr
    assert "[2/2 configs done]" in stdout and "Traceback" not in stderr
    view, runs = _children(uri)
    assert sorted(r.data.tags["outcome"] for r in runs) == ["finished"] * 2  # nothing to rerun
    continued = next(r for r in runs if r.info.run_id == victim.info.run_id)
    assert continued.data.tags["slurm_job_id"] != job  # it went on in another job ...
    assert _epochs(view, continued) == list(range(1, 1201))  # ... in the same run, each epoch logged once
    assert list((tmp_path / "netsweep-checkpoints").iterdir()) == []
    _no_jobs_left(slurm_cluster)


def test_a_job_out_of_time_hands_its_config_on_to_the_next_job(slurm_cluster, tmp_path):  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "epochs=100000", "threads=1", "hydra.launcher.slurm.time=00:01:00", *SLURM]
    sweep = run_cli(args, tmp_path, env_extra={"SLURM_CONF": str(slurm_cluster.conf)}, background=True)
    (first,) = wait_for(lambda: _training(uri, 5))
    job = first.data.tags["slurm_job_id"]

    def in_the_next_job():
        view, (run,) = _children(uri)
        return (view, run) if run.data.tags.get("slurm_job_id") not in (None, job) else None

    view, run = wait_for(in_the_next_job, timeout=240)  # Slurm checks time limits about every 30 s
    state = slurm_cluster.run("scontrol", "show", "job", job, check=False).stdout
    assert "JobState=TIMEOUT" in state or "JobState=CANCELLED" in state or not state, state
    at_handover = len(_epochs(view, run))
    wait_for(lambda: len(_epochs(read_store(uri), run)) > at_handover + 10)  # training goes on there
    sweep.send_signal(signal.SIGINT)
    try:
        _, stderr = sweep.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        sweep.kill()
        raise
    assert sweep.returncode == 130, stderr
    view = read_store(uri)
    epochs = _epochs(view, view.client.get_run(run.info.run_id))
    assert epochs == list(range(1, len(epochs) + 1))  # no epoch lost or logged twice across the jobs
    # the run keeps its one checkpoint (and, when the job was killed mid-write, that writer's leftover, which
    # the next attempt deletes); it holds the last epoch logged
    path = checkpoints.path_for(tmp_path / "netsweep-checkpoints", run.info.run_id)
    assert sorted((tmp_path / "netsweep-checkpoints").iterdir()) == sorted([path, *checkpoints.leftovers(path)])
    assert len(checkpoints.leftovers(path)) <= 1
    kept = checkpoints.load(path, run.data.tags["config_hash"])
    assert kept is not None and kept.meta["epochs_done"] in (len(epochs), len(epochs) - 1), kept.meta
    _no_jobs_left(slurm_cluster)
