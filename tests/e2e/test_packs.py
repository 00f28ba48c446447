"""Packs against real processes: a worker killed mid-pack costs only the configs of its pack, which the rerun
continues from their checkpoints in their own runs and ends exactly as a config trained alone."""

import os
import signal

import pytest

from ..helpers import assert_ends_as_trained_alone, checkpointed_epochs, read_store, run_cli, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 200  # a few seconds per config: long enough to be killed mid-training
GRID = [
    "-m",
    "optimizer.lr=0.05,0.1",
    "model.decay=0,1e-4",
    f"epochs={EPOCHS}",
    "threads=1",
    "hydra.launcher.n_jobs=2",
    "hydra.launcher.pack=2",
    "hydra.launcher.progress_interval_s=1",
]


def _children(uri, experiment="netsweep"):
    view = read_store(uri, experiment)
    return view.client, [r for r in view.runs if r.data.tags.get("netsweep.role") != "sweep"]


def _sweep(cli):
    """The sweep, started; returns once it has said what it trains (its store exists by then)."""
    process = run_cli(GRID, cli.cwd, background=True)
    process.head = []
    for line in process.stdout:
        process.head.append(line)
        if "] training " in line:
            break
    return process


def test_a_killed_pack_worker_costs_its_packs_configs_only_and_the_rerun_continues_them(cli):
    sweep = _sweep(cli)

    def all_training():  # by their checkpoints: the store lags by up to a second (src/experiment/epochs.py)
        _, runs = _children(cli.uri)
        going = [r for r in runs if r.info.status == "RUNNING"]
        trained = [r for r in going if checkpointed_epochs(cli.cwd / "netsweep-checkpoints", r) >= 5]
        return trained if len(trained) == 4 else None

    training = wait_for(all_training)
    pids = {r.data.tags["worker_pid"] for r in training}
    assert len(pids) == 2  # two packs of two configs, one per worker
    victim_pid = training[0].data.tags["worker_pid"]
    pack = sorted(r.info.run_id for r in training if r.data.tags["worker_pid"] == victim_pid)
    os.kill(int(victim_pid), signal.SIGKILL)  # kill -9 of a pack's worker, mid-training
    _, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, stderr
    assert "2 of 4 configs did not finish" in stderr and "Traceback" not in stderr
    client, runs = _children(cli.uri)
    outcomes = {r.info.run_id: r.data.tags["outcome"] for r in runs}
    assert sorted(run_id for run_id, outcome in outcomes.items() if outcome == "killed") == pack
    assert sorted(outcomes.values()) == ["finished"] * 2 + ["killed"] * 2
    folder = cli.cwd / "netsweep-checkpoints"
    assert sorted(p.name.split(".")[0] for p in folder.iterdir() if not p.name.startswith(".")) == pack

    rerun = _sweep(cli)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "[4/4 configs done]" in stdout
    client, runs = _children(cli.uri)
    assert len(runs) == 4 and all(r.data.tags["outcome"] == "finished" for r in runs)  # in their own runs
    for run_id in pack:
        steps = sorted(m.step for m in client.get_metric_history(run_id, "val_acc"))
        assert steps == list(range(1, EPOCHS + 1))  # every epoch logged once, across the two attempts
    assert list(folder.iterdir()) == []

    continued = next(r for r in runs if r.info.run_id == pack[0])
    assert_ends_as_trained_alone(cli.cwd, cli.uri, continued, epochs=EPOCHS)


def test_each_config_of_a_pack_logs_to_its_own_job_log(cli):
    """Hydra gives every job its log file; a pack's worker sets up all its members' jobs before it trains
    them together, and each member's lines (its run, its epochs, its result) still go to its own file."""
    lrs = ["0.05", "0.1", "0.2"]
    result = cli(
        "-m", f"optimizer.lr={','.join(lrs)}", "epochs=3", "hydra.launcher.n_jobs=1", "hydra.launcher.pack=3",
        "tracking.evaluate=false", "hydra.launcher.progress_interval_s=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "training a pack of 3 configs" in next((cli.cwd / "multirun").glob("*/*/0/run.log")).read_text()
    _, runs = _children(cli.uri)
    run_of = {r.data.params["optimizer.lr"]: r.info.run_id for r in runs}
    for number, lr in enumerate(lrs):
        text = next((cli.cwd / "multirun").glob(f"*/*/{number}/run.log")).read_text()
        others = [run_of[other] for other in lrs if other != lr]
        assert f"run {run_of[lr]} (lr={lr} " in text and not any(run_id in text for run_id in others), text
        assert [line.split()[1] for line in text.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
        assert text.rstrip().splitlines()[-1].startswith("test accuracy ")
