"""Retries for a store that is busy: a SQLite file locked by another writer, or being created or migrated
by another process. Each retried call also holds back Ctrl-C until it is done (see `src.interrupts`)."""

import functools
import random
import re
import time

from src.interrupts import shielded

# Both pass once the other process is done with the store.
TRANSIENT = (
    "database is locked",
    "database table is locked",
    "Online migration expected to match one row",
    "duplicate column name",
)
TRANSIENT_PATTERN = re.compile("|".join(map(re.escape, TRANSIENT)) + r"|table \w+ already exists")
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0)  # ~31 s on top of SQLite's own wait


def is_transient(exc: BaseException) -> bool:
    return bool(TRANSIENT_PATTERN.search(str(exc)))


def with_retries(call):
    """`call`, retried with backoff while the store is locked or being migrated by another process.

    MLflow already asks SQLite to wait 20 s for a lock; under many concurrent workers that can still
    run out, and losing a run's metrics to it would be worse than waiting a little longer.
    """

    @functools.wraps(call)
    def retrying(*args, **kwargs):
        with shielded():  # Ctrl-C waits for the write to finish rather than breaking its transaction
            for delay in RETRY_DELAYS_S:
                try:
                    return call(*args, **kwargs)
                except Exception as exc:  # MlflowException or SQLAlchemy's OperationalError, by call
                    if not is_transient(exc):
                        raise
                    time.sleep(delay * (1 + random.random()))
            return call(*args, **kwargs)

    return retrying
