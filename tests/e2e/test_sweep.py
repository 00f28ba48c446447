"""Sweeps end to end: the real CLI with `-m` in a subprocess, read back from its own SQLite store."""

import csv
import io

import numpy as np
import pytest

from ..helpers import read_store, run_cli

pytestmark = pytest.mark.slow

GRID = ["-m", "optimizer.lr=0.05,0.1,1e4", "model.decay=0,1e-4", "epochs=2", "hydra.launcher.n_jobs=2"]


def _store(uri):
    view = read_store(uri)
    return view.client, view.parents, view.children


def _artifacts(client, run_id, path=""):
    found = []
    for item in client.list_artifacts(run_id, path or None):
        found.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return found


def test_grid_with_divergence_is_grouped_reported_and_resumed(cli):
    result = cli(*GRID)
    assert result.returncode == 0, result.stderr
    client, parents, children = _store(cli.uri)
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    sweep_id = parent.data.tags["sweep_id"]
    assert {c.data.tags["sweep_id"] for c in children} == {sweep_id}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    outcomes = sorted((c.info.status, c.data.tags["outcome"]) for c in children)
    assert outcomes == [("FAILED", "diverged")] * 2 + [("FINISHED", "finished")] * 4
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "val_acc")) == (
            2 if child.data.tags["outcome"] == "finished" else 0
        )
        assert child.data.tags["blas_threads"] == "1"  # digits: too small a net for a second thread
        assert child.data.tags["blas_threads_policy"] == "fixed at 1"
    assert parent.info.status == "FINISHED"
    report = set(_artifacts(client, parent.info.run_id))
    assert {
        "report/curves.png",
        "report/heatmap.png",
        "report/leaderboard.csv",
        "report/leaderboard.md",
        "sweep.json",
    } <= report
    assert "6 configs" in result.stdout and "best config: lr=" in result.stdout
    assert "reproduce it: python -m src.run optimizer.lr=" in result.stdout

    again = cli(*GRID)
    assert again.returncode == 0, again.stderr
    assert "skip " not in again.stdout and "nothing to train: all 6 configs already have a result" in again.stdout
    _, parents_again, children_again = _store(cli.uri)
    assert len(parents_again) == 1 and len(children_again) == 6

    forced = cli(*GRID, "hydra.launcher.resume=false")
    assert forced.returncode == 0, forced.stderr
    assert len(_store(cli.uri)[2]) == 12

    rebuilt = run_cli([sweep_id, "--out", cli.cwd / "report"], cli.cwd, module="src.report")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"wrote {cli.cwd / 'report' / 'heatmap.png'}" in rebuilt.stdout
    rows = list(csv.DictReader(io.StringIO((cli.cwd / "report/leaderboard.csv").read_text())))
    assert len(rows) == 6
    assert [r["outcome"] for r in rows][-2:] == ["diverged", "diverged"]
    finished = [float(r["best_val_acc"]) for r in rows if r["outcome"] == "finished"]
    assert finished == sorted(finished, reverse=True)
    assert (cli.cwd / "report/heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_a_config_that_raises_fails_alone_and_the_sweep_exits_non_zero(cli, rng):
    good, bad = cli.cwd / "good.npz", cli.cwd / "bad.npz"
    X = rng.integers(0, 256, size=(60, 4, 4)).astype(np.uint8)
    arrays = {"X_train": X, "y_train": np.arange(60) % 3, "X_test": X[:9], "y_test": np.arange(9) % 3}
    np.savez(good, **arrays)
    np.savez(bad, **{**arrays, "y_test": arrays["y_test"] + 7})
    result = cli("-m", "data=npz", f"data.path={good},{bad}", "epochs=2", "hydra.launcher.n_jobs=2")
    assert result.returncode == 1
    assert "1 of 2 configs did not finish" in result.stderr and "Traceback" not in result.stderr
    client, (parent,), children = _store(cli.uri)
    by_outcome = {c.data.tags["outcome"]: c for c in children}
    assert set(by_outcome) == {"finished", "error"}
    failed = by_outcome["error"]
    assert failed.info.status == "FAILED" and "labels in" in failed.data.tags["failure_reason"]
    assert "traceback.txt" in _artifacts(client, failed.info.run_id)
    assert parent.info.status == "FAILED"

    np.savez(bad, **arrays | {"X_train": X[::-1].copy()})  # fixed: the rerun trains only that config
    rerun = cli("-m", "data=npz", f"data.path={good},{bad}", "epochs=2", "hydra.launcher.n_jobs=2")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("skip ") == 1 and "training 1 config (1 already done, skipped)" in rerun.stdout


def test_a_bad_value_in_a_sweep_stops_it_before_any_run(cli):
    result = cli("-m", "optimizer.lr=0.1,-1", "epochs=1")
    assert result.returncode == 2
    assert "optimizer.lr" in result.stderr and "Traceback" not in result.stderr
    assert not _store(cli.uri)[2]


def test_named_sweep_file_runs_its_grid(cli):
    result = cli("-m", "+sweep=seeds", "epochs=1", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr
    _, _, children = _store(cli.uri)
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1", "2", "3", "4"]
    assert "reproduce its best seed: python -m src.run seed=" in result.stdout
    assert "+sweep" not in result.stdout.split("reproduce its best seed:")[1]


OPTUNA = [
    "-m",
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.sampler.seed=7",
    "optimizer.lr=interval(0.01,0.5)",
    "epochs=2",
    "hydra.launcher.progress_interval_s=0",
]


def test_an_optuna_study_in_batches_is_one_sweep_and_resumes_across_batches(cli):
    result = cli(*OPTUNA)
    assert result.returncode == 0, result.stderr
    view = read_store(cli.uri)
    (parent,) = view.parents
    assert len(view.children) == 6 and len(view.under(parent)) == 6
    assert parent.info.run_name.endswith(f"(sweep {parent.data.tags['sweep_id']})")
    assert "6 configs" in parent.info.run_name and parent.info.status == "FINISHED"
    out = result.stdout
    assert out.count("best config:") == 1 and out.count("done: ") == 1 and out.count("reproduce it:") == 1
    assert [f"[{k}/6 configs done]" in out for k in range(1, 7)] == [True] * 6
    assert "Downloading artifacts" not in result.stdout + result.stderr
    assert "A new study created" not in result.stdout + result.stderr  # no library chatter
    report = set(_artifacts(view.client, parent.info.run_id))
    assert {"report/curves.png", "report/leaderboard.csv"} <= report
    assert len(read_store(cli.uri).parents) == 1

    again = cli(*OPTUNA)  # the same seeded study asks for the same trials: every batch is resumed
    assert again.returncode == 0, again.stderr
    assert "skip " not in again.stdout and again.stdout.count("] training ") == 1  # said once, not per batch
    assert "training 6 configs, 2 at a time as the sweeper asks for them (2 of the first 2 already done" in again.stdout
    assert len(read_store(cli.uri).runs) == 7
