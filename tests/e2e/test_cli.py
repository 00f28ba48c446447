"""The CLI end to end in a subprocess, each with its own SQLite store; results read back from MLflow."""

import csv
import io
import signal
from pathlib import Path

import numpy as np
import pytest

from ..helpers import read_store, run_cli, wait_for

pytestmark = pytest.mark.slow


def test_default_run_is_tracked_whole_and_reproducible(cli):
    first = cli("epochs=6")
    assert first.returncode == 0, first.stderr
    assert "test accuracy" in first.stdout and f"mlflow ui --backend-store-uri {cli.uri}" in first.stdout
    second = cli("epochs=6")
    assert second.returncode == 0, second.stderr
    view = read_store(cli.uri)
    assert len(view.runs) == 2
    run = view.runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "finished"
    assert run.info.run_name == "lr=0.1 decay=1e-4 h=256 epochs=6"
    params = run.data.params
    assert params["optimizer.lr"] == "0.1" and params["model.hidden_size"] == "256"
    assert params["data.name"] == "digits" and params["epochs"] == "6" and params["tracking.experiment"] == "netsweep"
    for key in ("config_hash", "data_fingerprint", "mlflow.source.git.commit"):
        assert run.data.tags.get(key), key
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s"):
        assert view.steps(run, name) == list(range(1, 7)), name
    losses = view.history(run, "val_loss")
    assert view.history(run, "train_loss")[-1] < view.history(run, "train_loss")[0]
    assert view.history(view.runs[1], "val_loss") == losses
    assert view.runs[1].data.tags["config_hash"] == run.data.tags["config_hash"]
    assert run.data.metrics["test_acc"] > 0.9 and 0 < run.data.metrics["best_epoch"] <= 6

    assert {"config.yaml", "figure1.png", "weights.npz", "history.csv"} <= set(view.artifacts(run))
    folder = cli.cwd / "downloaded"
    folder.mkdir()
    local = view.client.download_artifacts(run.info.run_id, "", str(folder))
    with np.load(f"{local}/weights.npz", allow_pickle=False) as weights:
        assert weights["W1"].shape == (64, 256) and weights["W2"].shape == (256, 10)
    rows = list(csv.DictReader(io.StringIO(Path(f"{local}/history.csv").read_text())))
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(losses, rel=1e-6)
    assert Path(f"{local}/figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "hidden_size: 256" in Path(f"{local}/config.yaml").read_text()


def test_a_runs_evaluation_goes_on_after_the_prompt_and_lands_whole(cli):
    result = cli("epochs=2")
    assert result.returncode == 0, result.stderr
    assert "evaluating with mlflow.models.evaluate in the background" in result.stdout
    (run,) = read_store(cli.uri).runs
    assert run.info.status == "FINISHED"  # the run is closed before its evaluation starts

    def evaluated():
        (now,) = read_store(cli.uri).runs
        return now if "netsweep.evaluated" in now.data.tags else None

    done = wait_for(evaluated, timeout=180)
    assert (done.info.status, done.info.end_time) == (run.info.status, run.info.end_time)  # never reopened
    assert done.data.metrics["accuracy_score"] == pytest.approx(run.data.metrics["test_acc"])
    assert {"per_class_metrics.csv", "confusion_matrix.png"} <= set(read_store(cli.uri).artifacts(done))
    (log,) = cli.cwd.glob("outputs/*/*/evaluation.log")
    assert f"run {run.info.run_id} evaluated" in log.read_text()


def test_patience_stops_a_long_run_early(cli):
    result = cli("epochs=300", "patience=5")
    assert result.returncode == 0, result.stderr
    assert "stopped early at epoch" in result.stdout
    (run,) = read_store(cli.uri).runs
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "finished"
    assert (
        run.data.metrics["epochs_trained"] < 100
        and "no lower validation loss for 5 epochs" in run.data.tags["stopped_early"]
    )


def test_bad_inputs_exit_2_with_one_line_and_no_run(cli):
    for args, needle in [
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["model.hiden_size=3"], "did you mean model.hidden_size?"),
        (["optimizer.l=0.1"], "did you mean optimizer.lr?"),
        (["data=npz", f"data.path={cli.cwd}/none.npz"], "none.npz"),
        (["optimizer.batch_size=100000"], "optimizer.batch_size"),
    ]:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
        assert "+" not in lines[0], lines[0]
    assert read_store(cli.uri).runs == []


def test_divergence_fails_the_run_with_its_reason_and_curves(cli):
    result = cli("optimizer.lr=1e4", "epochs=3")
    assert result.returncode == 3
    assert "diverged at epoch 1" in result.stderr and "Traceback" not in result.stderr
    view = read_store(cli.uri)
    (run,) = view.runs
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "diverged"
    assert "epoch 1, step" in run.data.tags["failure_reason"]
    assert {"figure1.png", "history.csv"} <= set(view.artifacts(run))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_ends_the_run_killed(cli, sig):
    process = run_cli(["epochs=100000"], cli.cwd, background=True)
    for line in process.stdout:  # wait until training is under way
        if line.startswith("epoch"):
            break
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    view = read_store(cli.uri)
    (run,) = view.runs
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "killed"
    assert {"history.csv", "figure1.png"} <= set(view.artifacts(run))  # the epochs it trained are kept
