"""The single-node Slurm cluster of `.ci/slurm-cluster` runs a batch job and cancels a running one."""

import pytest

from .slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow


def test_sbatch_runs_a_job(slurm_cluster, tmp_path):  # noqa: F811
    out = tmp_path / "hi.out"
    job = slurm_cluster.sbatch("--output", str(out), "--wrap", "echo hi")
    assert slurm_cluster.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=60) == "COMPLETED"
    assert out.read_text().strip() == "hi"


def test_scancel_ends_a_running_job(slurm_cluster, tmp_path):  # noqa: F811
    job = slurm_cluster.sbatch("--output", str(tmp_path / "sleep.out"), "--wrap", "sleep 300")
    slurm_cluster.wait_state(job, "RUNNING", timeout=60)
    slurm_cluster.run("scancel", job)
    assert slurm_cluster.wait_state(job, {"CANCELLED", "COMPLETED", "FAILED"}, timeout=30) == "CANCELLED"
    assert not slurm_cluster.run("squeue", "-h", "-j", job, "-t", "RUNNING", check=False).stdout.strip()
