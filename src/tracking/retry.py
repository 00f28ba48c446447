"""Retries for a store that is busy: a SQLite file locked by another writer, or being created or migrated
by another process (netsweep's own processes take turns, src/tracking/sqlite_files.py, but `mlflow ui` or
another MLflow client may migrate a fresh store at the same moment). Each retried call also holds back
Ctrl-C until it is done (see `src.interrupts`).

A busy store is recognised by the errors in the exception's cause chain (MLflow raises its own exception
`from` SQLAlchemy's, which SQLAlchemy raises `from` sqlite3's): SQLite's result codes for a lock, and the
few errors a migration racing another one leaves. A tracking server's reply carries only text, so that is
matched by its message, as the server's SQLite worded it.
"""

import functools
import random
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from src.interrupts import shielded

BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: primary result codes (an extended code's low byte)
BUSY_MESSAGES = ("database is locked", "database table is locked")  # SQLite's words for those codes
# SQLite errors a step of a migration meets when another process took that step first:
RACED_MIGRATION = re.compile(r"duplicate column name|table \w+ already exists")
RACED_VERSION = "Online migration expected to match one row"  # Alembic, updating a version another one moved
# Two runs logging one new dataset input at once: the loser's retry finds the winner's row.
RACED_DATASET = "UNIQUE constraint failed: datasets."
REMOTE_PATTERN = re.compile(
    "|".join(map(re.escape, (*BUSY_MESSAGES, RACED_VERSION, RACED_DATASET))) + "|" + RACED_MIGRATION.pattern
)
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0)  # ~31 s on top of SQLite's own wait

P = ParamSpec("P")
R = TypeVar("R")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from (or while handling), the database driver's included."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        if isinstance(link, DBAPIError):
            todo.append(link.orig)
        todo.append(link.__cause__ or (None if link.__suppress_context__ else link.__context__))


def _sqlite_busy(error: sqlite3.Error) -> bool:
    if sys.version_info >= (3, 11):  # Python exposes SQLite's result code from 3.11 on
        return isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode & 0xFF in BUSY_CODES
    return isinstance(error, sqlite3.OperationalError) and str(error) in BUSY_MESSAGES


def _sqlite_transient(error: sqlite3.Error) -> bool:
    """A lock, or a migration step or dataset row another process got to first."""
    if _sqlite_busy(error):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return bool(RACED_MIGRATION.match(str(error)))
    return isinstance(error, sqlite3.IntegrityError) and str(error).startswith(RACED_DATASET)


def is_transient(exc: BaseException) -> bool:
    """True for an error that passes once another process is done with the store."""
    for link in _chain(exc):
        if isinstance(link, sqlite3.Error):
            return _sqlite_transient(link)
        if isinstance(link, CommandError):
            return str(link).startswith(RACED_VERSION)
    return bool(REMOTE_PATTERN.search(str(exc)))  # no local database error behind it: a server's reply


def with_retries(call: Callable[P, R]) -> Callable[P, R]:
    """`call`, retried with backoff while the store is locked or being migrated by another process.

    MLflow already asks SQLite to wait 20 s for a lock; under many concurrent workers that can still
    run out, and losing a run's metrics to it would be worse than waiting a little longer.
    """

    @functools.wraps(call)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
        for delay in RETRY_DELAYS_S:
            try:
                with shielded():  # Ctrl-C waits for this attempt to finish rather than break its transaction
                    return call(*args, **kwargs)
            except Exception as exc:  # MlflowException or SQLAlchemy's OperationalError, by call
                if not is_transient(exc):
                    raise
            time.sleep(delay * (1 + random.random()))  # Ctrl-C here stops at once: nothing is half-written
        with shielded():  # the last attempt: whatever it raises goes up
            return call(*args, **kwargs)

    return retrying
