"""A real single-node Slurm cluster on 127.0.0.1 for the tests that need one (`.ci/slurm-cluster`).

`slurm_cluster` (session-scoped) starts munged, slurmctld and slurmd in a temporary folder, yields a
`SlurmCluster` (its `slurm.conf`, the environment clients need, small helpers), and stops the daemons by PID at
the end of the session. Below it, what the Slurm sweep tests share: the launcher settings and readers of the
sweep's runs. While it is up, `SLURM_CONF` is also set in this process's environment, so that
in-process clients (dask-jobqueue, submitit) that call `sbatch`/`squeue` reach it; the old value is restored after.

Outside CI it skips where it cannot run (not Linux, not root, Slurm not installed); with CI=true it fails.
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..helpers import read_store, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "slurm-cluster"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    env: dict = field(default_factory=dict)  # os.environ plus SLURM_CONF: for subprocesses that run Slurm clients

    def run(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster, e.g. cluster.run("squeue", "-h")."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def sbatch(self, *args) -> str:
        """Submit (`sbatch --parsable ARGS`) and return the job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str:
        """COMPLETED, RUNNING, CANCELLED, TIMEOUT, ...; '' once the job has left slurmctld (MinJobAge after its end)."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return ""

    def wait_state(self, job_id: str, states, timeout=60.0) -> str:
        """Wait until the job is in one of `states`; returns that state."""
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {state or 'gone'} after {timeout} s, not {sorted(states)}")

    def logs(self) -> str:
        parts = []
        for log in sorted((self.folder / "log").glob("*.log")):
            parts.append(f"----- {log} -----\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(parts)


def _unavailable() -> str:
    if not sys.platform.startswith("linux"):
        return "a Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "starting a Slurm cluster needs root"
    have = all(shutil.which(c) or Path("/usr/sbin", c).exists() for c in ("slurmctld", "slurmd", "munged", "sbatch"))
    if not have and not shutil.which("apt-get"):
        return "Slurm (slurm-wlm, munge) is not installed"
    return ""


def _script(action: str, folder: Path, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action, str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = _unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    # pytest's folders are short enough for munge's and slurmstepd's UNIX sockets (108 bytes at most).
    folder = tmp_path_factory.mktemp("slurm")
    started = _script("start", folder)
    if started.returncode != 0:
        _script("stop", folder, timeout=120)
        message = f"the Slurm cluster did not start (rc {started.returncode}):\n{started.stdout}\n{started.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    conf = folder / "slurm.conf"
    cluster = SlurmCluster(folder=folder, conf=conf, env={**os.environ, "SLURM_CONF": str(conf)})
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stopped = _script("stop", folder, timeout=120)
        if stopped.returncode != 0:
            print(f"slurm-cluster stop: rc {stopped.returncode}\n{stopped.stderr}", file=sys.stderr)


SWEEP = (
    "hydra.launcher.backend=slurm",
    "hydra.launcher.slurm.scheduler_host=127.0.0.1",  # tests listen on loopback only
    "hydra.launcher.slurm.mem_per_job=1G",
    "hydra.launcher.progress_interval_s=1",
)


def sweep_runs(uri):
    """(the store's view, the sweep's config runs)."""
    view = read_store(uri)
    return view, [r for r in view.runs if r.data.tags.get("netsweep.role") != "sweep"]


def epochs(view, run):
    return sorted(m.step for m in view.client.get_metric_history(run.info.run_id, "val_acc"))


def training(uri, at_least):
    """The sweep's runs that logged `at_least` epochs, once every config has (None before)."""
    try:
        view, runs = sweep_runs(uri)
    except Exception:  # the store is being created
        return None
    return runs if runs and all(len(epochs(view, r)) >= at_least for r in runs) else None


def killed(uri, run_id):
    """The run once it is KILLED (None before)."""
    run = read_store(uri).client.get_run(run_id)
    return run if run.info.status == "KILLED" else None


def no_jobs_left(cluster):
    return wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip() or None, timeout=60)
