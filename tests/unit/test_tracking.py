"""The tracking layer: retries on a busy store, URI resolution, interrupts held back during a write, new
stores copied from a pristine one, and the Store API on a real (copied) SQLite store: outcomes, statuses,
searches, manifests."""

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import mlflow
import numpy as np
import pytest
import sqlalchemy.exc
from alembic.util import CommandError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from src import interrupts
from src.errors import ConfigError, Interrupted
from src.outcomes import RESULTS, Outcome
from src.tracking import names, opening, retry, sqlite_files
from src.tracking.api import StepMetrics
from src.tracking.mlflow_client import TrackingClient
from src.tracking.opening import is_local_file, open_store, resolve_uri
from src.tracking.provenance import git_tags
from src.tracking.sqlite_files import latest_schema, schema_version, wait_for_migrations

from ..fakes import FakeStore
from ..helpers import REPO


def _sqlite_error(tmp_path, sql: str, locked: bool = False) -> sqlite3.Error:
    """The error SQLite itself raises for `sql` (on a database another connection holds locked)."""
    db = tmp_path / "errors.db"
    with contextlib.closing(sqlite3.connect(db)) as setup:
        setup.executescript(
            "CREATE TABLE IF NOT EXISTS runs (name TEXT);"
            "CREATE TABLE IF NOT EXISTS datasets (experiment_id INT, name TEXT, UNIQUE (experiment_id, name));"
            "CREATE TABLE IF NOT EXISTS experiments (name TEXT UNIQUE);"
            "INSERT OR IGNORE INTO datasets VALUES (1, 'd'); INSERT OR IGNORE INTO experiments VALUES ('x');"
        )
    holder, trying = sqlite3.connect(db, isolation_level=None), sqlite3.connect(db, timeout=0)
    if locked:
        holder.execute("BEGIN EXCLUSIVE")
    try:
        trying.execute(sql)
    except sqlite3.Error as error:
        return error
    finally:
        trying.close()
        holder.close()
    raise AssertionError(f"{sql} raised nothing")


def _as_mlflow_raises_it(error: BaseException) -> MlflowException:
    """`error` as MLflow's SQL store raises it: an MlflowException from SQLAlchemy's error from the driver's."""
    wrapper = (
        sqlalchemy.exc.IntegrityError if isinstance(error, sqlite3.IntegrityError) else sqlalchemy.exc.OperationalError
    )
    try:
        try:
            raise wrapper("SQL", {}, error) from error
        except sqlalchemy.exc.DBAPIError as wrapped:
            raise MlflowException(f"({type(error).__module__}.{type(error).__name__}) {error}") from wrapped
    except MlflowException as raised:
        return raised


def test_a_busy_store_is_told_by_the_errors_behind_the_exception(tmp_path):
    locked = _sqlite_error(tmp_path, "SELECT * FROM runs", locked=True)
    assert locked.sqlite_errorname == "SQLITE_BUSY"
    transient = [
        locked,
        _sqlite_error(tmp_path, "ALTER TABLE runs ADD COLUMN name TEXT"),  # a migration step taken already
        _sqlite_error(tmp_path, "CREATE TABLE experiments (x)"),
        _sqlite_error(tmp_path, "INSERT INTO datasets VALUES (1, 'd')"),  # two runs logging one new dataset
        CommandError("Online migration expected to match one row when updating 'a' to 'b' in 'alembic_version'"),
    ]
    for error in transient:
        assert retry.is_transient(_as_mlflow_raises_it(error)), error
    lasting = [
        _sqlite_error(tmp_path, "SELECT * FROM no_such_table"),
        _sqlite_error(tmp_path, "INSERT INTO experiments VALUES ('x')"),  # an experiment name taken: not a race
        CommandError("Can't locate revision identified by 'zzz'"),
    ]
    for error in lasting:
        assert not retry.is_transient(_as_mlflow_raises_it(error)), error
    # The error behind decides, whatever the wrapper's text says
    try:
        raise MlflowException("database is locked, or so the message says") from lasting[0]
    except MlflowException as mislabelled:
        assert not retry.is_transient(mislabelled)
    # A tracking server's reply is text only: its store's words for a lock, or for the dataset race
    assert retry.is_transient(MlflowException("TEMPORARILY_UNAVAILABLE: (sqlite3.OperationalError) database is locked"))
    assert retry.is_transient(RuntimeError("BAD_REQUEST: UNIQUE constraint failed: datasets.experiment_id"))
    assert not retry.is_transient(RuntimeError("Experiment 'x' already exists"))
    assert not retry.is_transient(RuntimeError("UNIQUE constraint failed: experiments.name"))


def test_retries_outlast_a_locked_store_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(retry, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    locked = _as_mlflow_raises_it(_sqlite_error(tmp_path, "SELECT * FROM runs", locked=True))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise locked
        return "ok"

    assert retry.with_retries(flaky)() == "ok" and len(calls) == 3

    def always_locked():
        calls.append(1)
        raise locked

    calls.clear()
    with pytest.raises(MlflowException):
        retry.with_retries(always_locked)()
    assert len(calls) == 4  # every delay, then the last attempt's error goes up

    def broken():
        calls.append(1)
        raise ValueError("no such table: runs")

    calls.clear()
    with pytest.raises(ValueError):
        retry.with_retries(broken)()
    assert len(calls) == 1  # other errors are not retried


def test_a_store_whose_folder_takes_no_lock_file_is_still_read(tmp_path):
    ran = []
    with sqlite_files.exclusive(tmp_path / "missing-folder" / "mlflow.db.lock"):  # as in a read-only folder
        ran.append(True)
    assert ran == [True] and not (tmp_path / "missing-folder").exists()


def test_relative_sqlite_uris_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "x").mkdir()
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_uri("sqlite:///x/y.db") == f"sqlite:///{tmp_path}/x/y.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_uri(None) == "http://127.0.0.1:5000"
    assert resolve_uri(f"sqlite:///{tmp_path}/m.db") == f"sqlite:///{tmp_path}/m.db"
    assert is_local_file("sqlite:////abs/m.db") and not is_local_file("http://h:5000")


@pytest.mark.parametrize(
    "uri, advice",
    [
        ("mlflow.db", "is a path, not a URI: for a SQLite store write sqlite:///"),
        ("/tmp", "is a path, not a URI: for the folder store there write file:///tmp"),
        ("htp://tracking:5000", "unknown scheme 'htp': use sqlite:///path/to/mlflow.db or http(s)://host:port"),
        ("sqlite:////nonexistent/dir/x.db", "names a file in /nonexistent/dir, which does not exist"),
    ],
)
def test_tracking_uris_mlflow_would_misread_are_refused_with_what_to_write(uri, advice, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ConfigError, match=re.escape(advice)) as refused:
        open_store(resolve_uri(None))
    assert "(from MLFLOW_TRACKING_URI)" in str(refused.value)


def test_an_unreachable_tracking_server_is_reported_at_once(monkeypatch):
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # through a proxy only MLflow's own requests could tell
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach the tracking server http://127.0.0.1:{port} \("):
        open_store(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 10


def test_an_interrupt_waits_for_the_tracking_write_in_progress():
    finished = []

    def write():
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
        finished.append("write")
        return "done"

    interrupts.install()
    try:
        with pytest.raises(Interrupted):
            retry.with_retries(write)()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert finished == ["write"]  # the write completed before the interrupt was raised


@pytest.mark.parametrize(
    "outcome,status",
    [
        (Outcome.FINISHED, "FINISHED"),
        (Outcome.PRUNED, "FINISHED"),
        (Outcome.DIVERGED, "FAILED"),
        (Outcome.ERROR, "FAILED"),
        (Outcome.KILLED, "KILLED"),
    ],
)
def test_each_outcome_ends_a_run_with_its_status_and_reads_back(store_uri, outcome, status):
    store = open_store(store_uri)
    experiment = store.experiment_id("e")
    run = store.create_run(experiment, "a run", {names.CONFIG_HASH: "h"})
    assert store.phase(run.run_id) == Outcome.RUNNING
    run.close(outcome, "why" if outcome != Outcome.FINISHED else None)
    record = store.run(run.run_id)
    assert record.outcome == outcome and record.name == "a run" and record.tags[names.CONFIG_HASH] == "h"
    assert MlflowClient(store_uri).get_run(run.run_id).info.status == status
    assert (record.tags.get(names.FAILURE_REASON) == "why") == (outcome != Outcome.FINISHED)


def test_many_steps_written_at_once_keep_each_step_its_time_and_the_tags_come_last(store_uri):
    store = open_store(store_uri)
    run = store.create_run(store.experiment_id("e"), "r", {})
    steps = [StepMetrics(s, {f"m{k}": s + k / 10 for k in range(7)}, 1_000 * s) for s in range(1, 151)]
    run.log_steps(steps, tags={"curve": "1 2"})  # 1050 metrics: more than one log_batch takes
    run.log_steps([], tags={"pruned": "no"})
    client = MlflowClient(store_uri)
    history = sorted(client.get_metric_history(run.run_id, "m3"), key=lambda m: m.step)
    assert [(m.step, m.value, m.timestamp) for m in history] == [(s, s + 0.3, 1_000 * s) for s in range(1, 151)]
    tags = client.get_run(run.run_id).data.tags
    assert tags["curve"] == "1 2" and tags["pruned"] == "no"
    assert store.epochs_logged(run.run_id) == 0  # no val_acc among them


def test_a_write_of_many_steps_that_fails_midway_leaves_whole_steps(store_uri, monkeypatch):
    store = open_store(store_uri)
    run = store.create_run(store.experiment_id("e"), "r", {})
    calls = []
    log_batch = TrackingClient.log_batch

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the disk is full")
        return log_batch(self, *args, **kwargs)

    monkeypatch.setattr(TrackingClient, "log_batch", second_fails)
    steps = [StepMetrics(s, {f"m{k}": float(k) for k in range(7)}, 1_000 * s) for s in range(1, 151)]
    with pytest.raises(OSError):
        run.log_steps(steps)
    client = MlflowClient(store_uri)
    written = {k: sorted(m.step for m in client.get_metric_history(run.run_id, f"m{k}")) for k in range(7)}
    assert written[0] and all(steps == written[0] for steps in written.values())  # no step half written


def test_scheduled_runs_are_attached_and_searched_by_netsweep_terms(store_uri):
    store = open_store(store_uri)
    experiment = store.experiment_id("e")
    assert store.experiment_id("e") == experiment
    parent = store.create_run(experiment, "sweep s1", {names.SWEEP_ID: "s1", names.ROLE: names.ROLE_SWEEP})
    child = store.create_run(
        experiment, "c", {names.SWEEP_ID: "s1", names.CONFIG_HASH: "h1"}, parent_run_id=parent.run_id, scheduled=True
    )
    assert store.phase(child.run_id) == Outcome.SCHEDULED
    store.attach_run(child.run_id, {"worker_pid": 7})
    assert store.phase(child.run_id) == Outcome.RUNNING
    for epoch, acc in enumerate((0.5, 0.7, 0.6), start=1):
        child.log_metrics({"val_acc": acc, "val_loss": 1 - acc}, step=epoch)
    assert store.history(child.run_id, ["val_acc"]) == {"val_acc": [0.5, 0.7, 0.6]}
    assert store.epochs_logged(child.run_id) == 3
    child.close(Outcome.FINISHED)
    other = store.create_run(experiment, "d", {names.CONFIG_HASH: "h1"})
    other.close(Outcome.DIVERGED, "boom")
    assert store.find_sweep("s1").run_id == parent.run_id
    assert store.find_sweep("s1", experiment).run_id == parent.run_id and store.find_sweep("nope") is None
    assert store.results_by_config(experiment)["h1"].run_id == child.run_id  # finished beats diverged
    assert {r.run_id for r in store.runs([experiment], sweep_id="s1")} == {parent.run_id, child.run_id}
    assert {r.run_id for r in store.runs([experiment], outcomes=RESULTS)} == {child.run_id, other.run_id}
    assert store.run(child.run_id).parent_run_id == parent.run_id
    parent.log_text('{"configs": [1]}', names.MANIFEST)
    assert store.read_json(parent.run_id, names.MANIFEST) == {"configs": [1]}
    assert store.read_json(parent.run_id, "absent.json") == {}
    assert names.MANIFEST in store.artifacts(parent.run_id)


def test_provenance_names_the_commit():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert git_tags()[names.GIT_COMMIT] == head.stdout.strip()


def test_a_new_store_is_created_aside_and_put_in_place_whole(tmp_path):
    db = tmp_path / "fresh.db"
    store = open_store(f"sqlite:///{db}")
    assert schema_version(db) == latest_schema() and store.experiment_id("e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.db", "fresh.db.lock"]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty cache of pristine stores of this test's own (and a count of the migrations MLflow ran)."""
    monkeypatch.setenv(sqlite_files.CACHE_ENV, str(tmp_path / "cache"))
    migrations = []
    migrate = sqlite_files.migrate_new
    monkeypatch.setattr(sqlite_files, "migrate_new", lambda target: migrations.append(target) or migrate(target))
    return migrations


def test_new_stores_are_copies_of_one_pristine_store_per_mlflow_version(own_cache, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    first = open_store(f"sqlite:///{tmp_path / 'first.db'}")
    open_store(f"sqlite:///{tmp_path / 'second.db'}")
    assert len(own_cache) == 1  # one migration, by the first store
    pristine = tmp_path / "cache" / f"mlflow-{mlflow.__version__}.db"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [pristine.name, pristine.name + ".lock"]
    assert schema_version(tmp_path / "second.db") == schema_version(pristine) == latest_schema() is not None
    first.experiment_id("e")  # a copy is a store of its own, as MLflow would have made it here
    assert schema_version(pristine) and MlflowClient(f"sqlite:///{pristine}").search_experiments()[0].name == "Default"
    default = MlflowClient(f"sqlite:///{tmp_path / 'second.db'}").get_experiment("0")
    assert default.artifact_location == str(tmp_path / "here" / "mlruns" / "0")


def test_processes_starting_at_once_make_the_pristine_store_once(own_cache, tmp_path):
    barrier = threading.Barrier(3)
    made = []

    def start():  # each thread locks through its own file, as another process would
        barrier.wait()
        made.append(sqlite_files.pristine_in(tmp_path / "cache"))

    starters = [threading.Thread(target=start) for _ in range(3)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    assert len(own_cache) == 1 and len(set(made)) == 1 and schema_version(made[0]) is not None
    broken = made[0]
    broken.write_bytes(b"not a database")  # a damaged cache is made again, not copied
    assert schema_version(sqlite_files.pristine_in(tmp_path / "cache")) is not None and len(own_cache) == 2


def test_opening_waits_while_another_process_migrates(tmp_path):
    db = tmp_path / "m.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        connection.execute("INSERT INTO alembic_version VALUES ('a')")
    steps = iter(["b", "c", "head"])

    def migrate():  # another process moving the schema along, a step every 0.3 s
        for version in steps:
            time.sleep(0.3)
            with sqlite3.connect(db) as connection:
                connection.execute("UPDATE alembic_version SET version_num = ?", (version,))

    other = threading.Thread(target=migrate)
    started = time.monotonic()
    other.start()
    wait_for_migrations(db, "head", settled_s=2.0)
    assert schema_version(db) == "head" and 0.8 < time.monotonic() - started < 2.0
    other.join()
    started = time.monotonic()
    wait_for_migrations(db, "newer", settled_s=0.5)  # stuck short of the latest: waits until it is settled
    assert 0.5 <= time.monotonic() - started < 1.5
    assert schema_version(tmp_path / "absent.db") is None


def test_credentials_in_a_tracking_uri_are_refused():
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_USERNAME"):
        resolve_uri("http://me:secret@tracking:5000")


def _saved_arrays(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8), labels=np.arange(3))
    return path


def test_an_evaluation_in_its_own_process_tags_the_run_last_and_removes_its_arrays(tmp_path, monkeypatch):
    store = FakeStore()
    run_id = store.create_run(store.experiment_id("e"), "r", {}).run_id
    monkeypatch.setattr(opening, "open_store", lambda uri: store)
    arrays = _saved_arrays(tmp_path)
    assert opening.evaluate_saved([store.uri, run_id, str(arrays)]) == 0
    assert store.evaluated == [run_id] and store.run(run_id).tags[names.EVALUATED] == opening.EVALUATED_BY
    assert not arrays.exists()

    def broken(run_id, images, labels, classes=()):
        raise RuntimeError("the evaluator failed")

    other = store.create_run(store.experiment_id("e"), "r2", {}).run_id
    store.evaluate_model = broken
    arrays = _saved_arrays(tmp_path)
    with pytest.raises(RuntimeError, match="evaluator failed"):
        opening.evaluate_saved([store.uri, other, str(arrays)])
    assert names.EVALUATED not in store.run(other).tags and not arrays.exists()  # absent, and said so by the tag


def test_a_run_handed_to_evaluation_is_never_reopened_and_gains_nothing_when_it_fails(
    compose_cfg, store_uri, monkeypatch
):
    from src.experiment.runner import load_data, run_config, settings_of

    cfg = compose_cfg(f"tracking.uri={store_uri}", "epochs=1")
    summary = run_config(cfg)
    client = MlflowClient(store_uri)
    before = client.get_run(summary.run_id)
    seen = []

    def failing_evaluation(*args, **kwargs):  # as a crash mid-evaluation: what does the run look like then?
        seen.append(client.get_run(summary.run_id).info.status)
        raise RuntimeError("killed mid-evaluation")

    monkeypatch.setattr(mlflow.models, "evaluate", failing_evaluation)
    dataset = load_data(settings_of(cfg))
    with pytest.raises(RuntimeError, match="mid-evaluation"):
        open_store(store_uri).evaluate_model(summary.run_id, dataset.X_test_raw, dataset.y_test)
    after = client.get_run(summary.run_id)
    assert seen == ["FINISHED"]  # not reopened (RUNNING) while it is evaluated
    assert (after.info.status, after.info.end_time, after.data.metrics) == (
        before.info.status,
        before.info.end_time,
        before.data.metrics,
    )
    assert {a.path for a in client.list_artifacts(summary.run_id)} == {
        a.path for a in client.list_artifacts(before.info.run_id)
    }
