"""Fault injection in subprocesses: bad inputs, interrupts, killed workers, a locked store, many writers."""

import contextlib
import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ..helpers import (
    IDX_FILES,
    assert_ends_as_trained_alone,
    checkpointed_epochs,
    read_store,
    run_cli,
    wait_for,
    write_idx,
    write_idx_folder,
)

pytestmark = pytest.mark.slow


def _runs(uri, experiment="netsweep"):
    view = read_store(uri, experiment)
    return view.client, view.runs


def _bad_files(folder):
    """One broken data source per kind of damage, as (overrides, what the message must name)."""
    cases = {}
    for kind in ("truncated", "magic", "count"):
        root = folder / kind
        root.mkdir()
        write_idx_folder(root)
        images = root / (IDX_FILES["X_train"] + ".gz")
        if kind == "truncated":
            images.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (40).to_bytes(4, "big") * 3)[:-6])
        elif kind == "magic":
            write_idx(images, np.zeros((40, 6, 6)), magic=0x0801)
        else:
            write_idx(root / (IDX_FILES["y_train"] + ".gz"), np.zeros(41))
        cases[kind] = (["data=mnist", f"data.root={root}", "data.download=false"], str(root))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(50, 4, 4)).astype(np.uint8)
    good = {"X_train": X, "y_train": np.arange(50) % 3, "X_test": X[:5], "y_test": np.arange(5) % 3}
    for kind, change in {
        "nan": {"X_train": np.where(X > 128, np.nan, 0.5)},
        "inf": {"X_train": np.where(X > 128, np.inf, 0.5)},
        "pickle": {"X_train": X.astype(object)},
        "labels": {"y_train": good["y_train"] - 1},
        "lengths": {"y_train": good["y_train"][:-3]},
    }.items():
        path = folder / f"{kind}.npz"
        np.savez(path, **{**good, **change})
        cases[kind] = (["data=npz", f"data.path={path}"], str(path))
    unreadable = folder / "unreadable.npz"
    np.savez(unreadable, **good)
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):  # root reads anything: corrupt it instead
        unreadable.write_bytes(b"PK\x03\x04 not really a zip")
    cases["unreadable"] = (["data=npz", f"data.path={unreadable}"], str(unreadable))
    cases["missing"] = (["data=npz", f"data.path={folder / 'absent.npz'}"], "absent.npz")
    return cases


CONFIG_CASES = {
    "lr zero": (["optimizer.lr=0"], "optimizer.lr"),
    "lr not a number": (["optimizer.lr=fast"], "optimizer.lr"),
    "batch < 1": (["optimizer.batch_size=0"], "optimizer.batch_size"),
    "hidden < 1": (["model.hidden_size=0"], "model.hidden_size"),
    "epochs < 1": (["epochs=0"], "epochs"),
    "decay < 0": (["model.decay=-1"], "model.decay"),
    "val_fraction 1.5": (["data.val_fraction=1.5"], "data.val_fraction"),
    "unknown option": (["optimizer=rmsprop"], "optimizer/rmsprop"),
    "unknown key": (["+model.depth=3"], "model.depth"),
    "typo": (["model.hiden_size=3"], "did you mean model.hidden_size?"),
    "schema node": (["data=digits_schema"], "available options"),
    "batch > train set": (["optimizer.batch_size=5000"], "optimizer.batch_size"),
}


def test_every_bad_input_gets_one_line_exit_2_and_no_run(cli):
    cases = {**CONFIG_CASES, **_bad_files(cli.cwd)}
    started = {name: run_cli(args, cli.cwd, background=True) for name, (args, _) in cases.items()}  # side by side
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode == 2, (name, stderr)
        assert len(lines) == 1 and cases[name][1] in lines[0], (name, stderr)
        assert "Traceback" not in stderr + stdout, name
    assert not _runs(cli.uri)[1], "a bad input created a run"


def _start(cli, *args):
    """Start the CLI; for a sweep, return once its store exists (polling a fresh store while the sweep
    creates it would race its schema migration, which is not what these tests are about). The lines read
    until then are kept as `process.head`."""
    process = run_cli(list(args), cli.cwd, background=True)
    process.head = []
    if "-m" in args:
        for line in process.stdout:
            process.head.append(line)
            if "] training " in line:  # "[sweep ...] training N configs": the store is ready
                break
    return process


def _running_long_config(cli):
    """The worker pid of the long config, once it is training."""

    def find():
        for run in _runs(cli.uri)[1]:
            child = run.data.tags.get("netsweep.role") != "sweep"  # the parent's params list the values tried
            long = child and run.data.params.get("epochs") == "100000"
            if long and run.info.status == "RUNNING" and "worker_pid" in run.data.tags:  # tagged just after RUNNING
                return int(run.data.tags["worker_pid"])
        return None

    return wait_for(find)


def test_ctrl_c_stops_a_sweep_keeps_finished_configs_and_kills_running_ones(cli):
    sweep = _start(cli, "-m", "epochs=2,100000", "hydra.launcher.n_jobs=2", "hydra.launcher.progress_interval_s=1")
    try:
        _running_long_config(cli)
        wait_for(lambda: any(r.data.tags.get("outcome") == "finished" for r in _runs(cli.uri)[1]))
        sweep.send_signal(signal.SIGINT)
        _, stderr = sweep.communicate(timeout=120)
    finally:  # a failed wait leaves no sweep training on beside the next tests
        if sweep.poll() is None:
            sweep.send_signal(signal.SIGINT)  # its workers stop with it
            try:
                sweep.wait(60)
            except subprocess.TimeoutExpired:
                sweep.kill()
    assert sweep.returncode == 130, stderr
    assert "Traceback" not in stderr
    runs = _runs(cli.uri)[1]
    states = sorted((r.data.params.get("epochs", "sweep"), r.info.status, r.data.tags["outcome"]) for r in runs)
    parent = ("2, 100000", "KILLED", "killed")  # the sweep's parent: its params list the values tried
    assert states == [("100000", "KILLED", "killed"), ("2", "FINISHED", "finished"), parent]


# Seconds per config (digits trains an epoch in about 4 ms here): checkpoints are written at most once a second,
# so a config must outlast a few writes for two to be caught training with 5 epochs checkpointed each.
KILLED_EPOCHS = 1500


def test_a_killed_worker_costs_only_its_config_and_the_rerun_continues_it_from_its_checkpoint(cli):
    grid = [
        "-m",
        "optimizer.lr=0.05,0.1",
        "model.decay=0,1e-4",
        f"epochs={KILLED_EPOCHS}",
        "threads=1",
        "hydra.launcher.n_jobs=2",
        "hydra.launcher.progress_interval_s=1",
    ]
    sweep = _start(cli, *grid)

    folder = cli.cwd / "netsweep-checkpoints"

    def two_training():
        _, runs = _runs(cli.uri)
        running = [r for r in runs if r.info.status == "RUNNING" and r.data.tags.get("netsweep.role") != "sweep"]
        training = [r for r in running if checkpointed_epochs(folder, r) >= 5]
        return training if len(training) == 2 else None

    victim = wait_for(two_training)[0]
    os.kill(int(victim.data.tags["worker_pid"]), signal.SIGKILL)  # kill -9, mid-config
    stdout, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, stderr
    assert "1 of 4 configs did not finish" in stderr and "Traceback" not in stderr
    client, runs = _runs(cli.uri)
    assert not [r for r in runs if r.info.status in ("RUNNING", "SCHEDULED")]
    children = {r.info.run_id: r for r in runs if r.data.tags.get("netsweep.role") != "sweep"}
    assert children[victim.info.run_id].info.status == "KILLED"
    assert children[victim.info.run_id].data.tags["outcome"] == "killed"
    assert sorted(r.data.tags["outcome"] for r in children.values()) == ["finished"] * 3 + ["killed"]
    trained_before = checkpointed_epochs(folder, victim)
    assert 5 <= trained_before < KILLED_EPOCHS
    assert [p.name for p in folder.iterdir()] == [f"{victim.info.run_id}.ckpt.npz"]  # only the killed config's

    rerun = _start(cli, *grid)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "[4/4 configs done]" in stdout and stdout.count(": finished, best_val_ce") == 1
    assert f"continue run {victim.info.run_id} from its checkpoint" in "".join(rerun.head)
    client, runs = _runs(cli.uri)
    same_config = [r for r in runs if r.data.tags.get("config_hash") == victim.data.tags["config_hash"]]
    assert [r.info.run_id for r in same_config] == [victim.info.run_id]  # continued in the same run
    continued = same_config[0]
    assert continued.info.status == "FINISHED" and continued.data.tags["outcome"] == "finished"
    steps = sorted(m.step for m in client.get_metric_history(victim.info.run_id, "val_acc"))
    assert steps == list(range(1, KILLED_EPOCHS + 1))  # every epoch logged exactly once
    assert list(folder.iterdir()) == []

    # the same config trained without a break gives the same final metrics, bit for bit (threads=1)
    assert_ends_as_trained_alone(cli.cwd, cli.uri, continued, epochs=KILLED_EPOCHS, experiment="whole")


def _writer_of(pid: int) -> int:
    """The pid of the writer process (src/tracking/writer.py) the single run `pid` started."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid and b"src.tracking.writer" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    raise AssertionError(f"process {pid} has no writer process")


@pytest.mark.parametrize("victim", ["run", "writer"])
def test_a_single_run_killed_or_its_writer_killed_is_continued_by_the_same_command(cli, victim):
    """kill -9 of a single run's process: its writer closes the run killed; of its writer: the run stops in one
    line, keeping its checkpoint. Either way the same command continues the same run, every epoch once."""
    args = [f"epochs={KILLED_EPOCHS}", "threads=1"]
    run = _start(cli, *args)
    printed: list[str] = []
    threading.Thread(target=lambda: printed.extend(run.stdout), daemon=True).start()  # every epoch prints a line
    folder = cli.cwd / "netsweep-checkpoints"

    def training():
        runs = _runs(cli.uri)[1] if (cli.cwd / "mlflow.db").is_file() else []
        return runs[0] if runs and checkpointed_epochs(folder, runs[0]) >= 5 else None

    record = wait_for(training, timeout=120)
    os.kill(run.pid if victim == "run" else _writer_of(run.pid), signal.SIGKILL)
    run.wait(timeout=120)
    stderr = run.stderr.read()
    client, (left,) = _runs(cli.uri)
    if victim == "run":
        assert run.returncode == -signal.SIGKILL
        wait_for(lambda: _runs(cli.uri)[1][0].info.status == "KILLED", timeout=60)  # closed by its writer
    else:
        assert run.returncode == 1 and "Traceback" not in stderr
        assert [line for line in stderr.splitlines() if line.startswith("netsweep:")] == [
            "netsweep: the process writing this run to its tracking store ended (exit code -9) before the run was "
            "recorded whole; the run's checkpoint is kept: the same command continues it"
        ], stderr
        assert left.info.status == "RUNNING"
    assert checkpointed_epochs(folder, record) >= 5

    rerun = run_cli(args, cli.cwd, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"run {record.info.run_id} finished" in rerun.stdout
    client, (continued,) = _runs(cli.uri)  # the same run, no other
    assert continued.info.run_id == record.info.run_id and continued.data.tags["outcome"] == "finished"
    steps = sorted(m.step for m in client.get_metric_history(record.info.run_id, "val_acc"))
    assert steps == list(range(1, KILLED_EPOCHS + 1))  # every epoch logged exactly once
    assert list(folder.iterdir()) == []


def test_a_run_survives_its_store_being_locked_longer_than_sqlite_waits(cli):
    run = _start(cli, "epochs=40")
    for line in run.stdout:  # training under way
        if line.startswith("epoch  1/"):
            break
    # its writer process (src/tracking/remote.py) has opened the store and created the run; its epochs go on
    wait_for(lambda: (cli.cwd / "mlflow.db").is_file() and _runs(cli.uri)[1], timeout=120, every_s=0.05)
    store = sqlite3.connect(str(cli.cwd / "mlflow.db"), timeout=60, isolation_level=None)
    store.execute("BEGIN EXCLUSIVE")
    time.sleep(23)  # MLflow's own busy timeout is 20 s
    store.execute("COMMIT")
    store.close()
    run.communicate(timeout=120)
    assert run.returncode == 0
    client, (record,) = _runs(cli.uri)
    assert record.info.status == "FINISHED"
    for name in ("train_loss", "val_acc", "epoch_time_s"):
        steps = sorted(m.step for m in client.get_metric_history(record.info.run_id, name))
        assert steps == list(range(1, 41)), name


def test_sixteen_configs_on_eight_workers_against_a_fresh_store(cli):
    result = cli(
        "-m",
        "optimizer.lr=0.02,0.05,0.1,0.2",
        "model.decay=0,1e-5,1e-4,1e-3",
        "epochs=3",
        "hydra.launcher.n_jobs=8",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    client, runs = _runs(cli.uri)
    children = [r for r in runs if r.data.tags.get("netsweep.role") != "sweep"]
    assert len(children) == 16 and {r.info.status for r in runs} == {"FINISHED"}
    for run in children:
        for name in ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert sorted(steps) == [1, 2, 3], (run.info.run_name, name, steps)


LISTER = """
import sys, time
from mlflow import MlflowClient
time.sleep(float(sys.argv[2]))
end = time.time() + 10
while time.time() < end:
    try:
        MlflowClient(sys.argv[1]).search_runs(["0"])  # as `mlflow ui` does; it migrates a fresh store too
    except Exception:
        pass
    time.sleep(0.05)
"""


@pytest.mark.parametrize("reader_delay_s", [0.0, 0.6, 1.2])
def test_runs_opening_a_new_store_together_with_an_mlflow_reader_all_finish(tmp_path, reader_delay_s):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reader = subprocess.Popen([sys.executable, "-c", LISTER, uri, str(reader_delay_s)], cwd=tmp_path)
    runs = [run_cli(["epochs=2", f"seed={i}"], tmp_path, background=True) for i in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    reader.wait(timeout=60)
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-400:] for _, err in outputs]
    assert sorted(r.info.status for r in read_store(uri).runs) == ["FINISHED"] * 3
    assert not list(tmp_path.glob(".mlflow.db.creating-*"))  # no staging store left behind
    assert len(list(tmp_path.glob("outputs/*/*/figure1.png"))) == 3  # runs started together keep their folders apart
