"""Retries for a store that is busy: a SQLite file locked by another writer, or being created or migrated
by another process (netsweep's own processes take turns, src/tracking/client.py, but `mlflow ui` or another
MLflow client may migrate a fresh store at the same moment). Each retried call also holds back Ctrl-C
until it is done (see `src.interrupts`)."""

import contextlib
import fcntl
import functools
import random
import re
import sqlite3
import time
from pathlib import Path

from src.interrupts import shielded

# All pass once the other process is done with the store: a lock, or a migration racing another one.
TRANSIENT = (
    "database is locked",
    "database table is locked",
    "Online migration expected to match one row",
    "duplicate column name",
    "UNIQUE constraint failed: datasets.",  # two runs logging one new dataset input at once: a retry finds it
)
MIGRATION_SETTLED_S = 3.0  # a schema short of the latest, unchanged this long: no other process is migrating it
MIGRATION_WAIT_S = 120.0  # the longest netsweep waits for another process to finish creating a store
TRANSIENT_PATTERN = re.compile("|".join(map(re.escape, TRANSIENT)) + r"|table \w+ already exists")
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0)  # ~31 s on top of SQLite's own wait


def is_transient(exc: BaseException) -> bool:
    return bool(TRANSIENT_PATTERN.search(str(exc)))


@contextlib.contextmanager
def exclusive(path: Path):
    """Hold an exclusive lock on `path` (created if missing) while the block runs: processes that open the
    same SQLite store take turns to create or migrate it. The lock goes with the process, even a killed one.
    Where no lock file can be made (a read-only folder), the block runs unlocked: this process cannot create
    or migrate a store there either, only read one."""
    try:
        handle = open(path, "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def schema_version(db: Path) -> str | None:
    """The Alembic revision a SQLite store's schema is at (None: no store, or no schema yet)."""
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def wait_for_migrations(
    db: Path, head: str | None, settled_s: float = MIGRATION_SETTLED_S, wait_s: float = MIGRATION_WAIT_S
) -> None:
    """Return once the store's schema is at `head` (the latest), or has stopped changing short of it: a
    process other than netsweep's (an `mlflow ui` started at the same moment) may be creating or migrating
    it, and two migrations at once break a store for good."""
    deadline = time.monotonic() + wait_s
    version, since = schema_version(db), time.monotonic()
    while version != head and time.monotonic() < deadline and time.monotonic() - since < settled_s:
        time.sleep(0.1)
        now = schema_version(db)
        if now != version:
            version, since = now, time.monotonic()


def with_retries(call):
    """`call`, retried with backoff while the store is locked or being migrated by another process.

    MLflow already asks SQLite to wait 20 s for a lock; under many concurrent workers that can still
    run out, and losing a run's metrics to it would be worse than waiting a little longer.
    """

    @functools.wraps(call)
    def retrying(*args, **kwargs):
        for delay in (*RETRY_DELAYS_S, None):
            try:
                with shielded():  # Ctrl-C waits for this attempt to finish rather than break its transaction
                    return call(*args, **kwargs)
            except Exception as exc:  # MlflowException or SQLAlchemy's OperationalError, by call
                if delay is None or not is_transient(exc):
                    raise
            time.sleep(delay * (1 + random.random()))  # Ctrl-C here stops at once: nothing is half-written

    return retrying
