"""Tracking helpers that need no store: retries on a locked SQLite file, URI resolution."""

import pytest

from src import tracking


def test_retries_outlast_a_locked_store_and_nothing_else(monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.with_retries(flaky)() == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such table: runs")

    calls.clear()
    with pytest.raises(ValueError):
        tracking.with_retries(broken)()
    assert len(calls) == 1  # other errors are not retried
    for transient in ("Online migration expected to match one row when updating", "table experiments already exists",
                      "duplicate column name: storage_location"):
        assert tracking.TRANSIENT_PATTERN.search(transient)
    assert not tracking.TRANSIENT_PATTERN.search("Experiment 'x' already exists")


def test_relative_sqlite_uris_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.resolve_tracking_uri("sqlite:///x/y.db") == f"sqlite:///{tmp_path}/x/y.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"


def test_an_interrupt_waits_for_the_tracking_write_in_progress():
    import os
    import signal

    from src import interrupts

    finished = []

    def write():
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
        finished.append("write")
        return "done"

    interrupts.install()
    try:
        with pytest.raises(interrupts.Interrupted):
            tracking.with_retries(write)()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert finished == ["write"]  # the write completed before the interrupt was raised
