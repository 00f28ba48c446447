"""The command line at the edges a new user meets: Ctrl-C right after a sweep's last config (issue 21)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ..helpers import cli_env, read_store, run_cli

pytestmark = pytest.mark.slow
SWEEP = ["-m", "optimizer.lr=0.1,0.3", "epochs=1", "tracking.evaluate=false", "hydra.launcher.n_jobs=2"]


def test_ctrl_c_right_after_the_last_config_closes_the_parent_and_a_rerun_draws_the_report(cli):
    command = [sys.executable, "-m", "src.run", *SWEEP]
    sweep = subprocess.Popen(  # its own process group: Ctrl-C in a terminal reaches the workers too
        command,
        cwd=cli.cwd,
        env=cli_env(cli.uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in sweep.stdout:
        if "[2/2 configs done]" in line:  # the sweep now draws its report
            time.sleep(0.2)
            os.killpg(sweep.pid, signal.SIGINT)
            break
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "Traceback" not in err + out, err
    assert err.strip().splitlines()[-1] == "netsweep: interrupted after every config had ended (2 configs, none killed)"
    view = read_store(cli.uri)
    (parent,) = view.parents
    assert parent.info.status == "KILLED"  # closed, never left RUNNING
    assert sorted(r.data.tags["outcome"] for r in view.children) == ["finished", "finished"]
    again = run_cli(SWEEP, cli.cwd)
    assert again.returncode == 0, again.stderr
    assert "nothing to train: all 2 configs already have a result" in again.stdout
    (parent,) = read_store(cli.uri).parents
    assert parent.info.status == "FINISHED" and "report" in {
        a.path for a in view.client.list_artifacts(parent.info.run_id)
    }
