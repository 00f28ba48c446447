"""Local SQLite stores as files: a new one is a copy of a pristine migrated store (made once per MLflow
version, in a cache folder) put in place whole; processes that open one take turns; and nobody connects
while another process (an `mlflow ui` started at the same moment) is still migrating it.

Migrating a new store costs MLflow about 1.6 s; copying the pristine one a few milliseconds. The pristine
store is also where netsweep learns the schema revision this MLflow migrates to (its `alembic_version`),
without reading MLflow's own migration scripts.

Importing this module imports no mlflow (`cache_dir` is read by modules that must stay light): MLflow's
client is imported where a store is migrated or opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from src.tracking.opening import SQLITE_PREFIX

if TYPE_CHECKING:
    from src.tracking.mlflow_client import TrackingClient

CACHE_ENV = "NETSWEEP_CACHE_DIR"  # where pristine stores are kept (default: $XDG_CACHE_HOME/netsweep)
MIGRATION_SETTLED_S = 3.0  # a schema short of the latest, unchanged this long: no other process is migrating it
MIGRATION_WAIT_S = 120.0  # the longest netsweep waits for another process to finish creating a store
ARTIFACT_ROOT = "mlruns"  # MLflow's default artifact root for a SQLite store: ./mlruns of whoever creates it


def cache_dir() -> Path:
    """$NETSWEEP_CACHE_DIR, else $XDG_CACHE_HOME/netsweep, else ~/.cache/netsweep."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "netsweep"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs: processes that open the
    same SQLite store take turns to create or migrate it. The lock goes with the process, even a killed one.
    Where no lock file can be made (a read-only folder), the block runs unlocked: this process cannot create
    or migrate a store there either, only read one."""
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed by the with below; the open alone may fail)
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


def migrate_new(target: Path) -> None:
    """Have MLflow create and migrate a store in a private file next to `target`, then rename it there. The
    file's name is new each time: MLflow keeps a connection per URI for the life of the process."""
    from src.tracking.mlflow_client import TrackingClient  # deferred: importing mlflow takes about a second

    staging = target.with_name(f".{target.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        TrackingClient(SQLITE_PREFIX + str(staging)).search_experiments(max_results=1)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def pristine_in(folder: Path) -> Path:
    """The pristine store of this MLflow version in `folder`, made (under a lock, aside, renamed into place)
    unless a whole one is there: several processes starting at once make it once."""
    import mlflow  # deferred (the module docstring says why); whoever asks is about to open a store

    pristine = folder / f"mlflow-{mlflow.__version__}.db"
    if schema_version(pristine) is None:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write to {folder}")
        with exclusive(folder / (pristine.name + ".lock")):
            if schema_version(pristine) is None:  # nobody made it while this process waited
                migrate_new(pristine)
    return pristine


@functools.lru_cache(maxsize=1)
def _pristine_of_this_process() -> Path:
    return pristine_in(Path(tempfile.mkdtemp(prefix="netsweep-")))


def pristine_store() -> Path:
    """A migrated, empty store of the installed MLflow, made once per version in the cache folder (or, where
    that cannot be written, once per process in a temporary folder). Never written to once made; looked
    for afresh each time (a millisecond), so a cache cleared meanwhile is made again."""
    try:
        return pristine_in(cache_dir())
    except OSError:  # a read-only home: this process migrates one of its own
        return _pristine_of_this_process()


def latest_schema() -> str | None:
    """The schema revision this MLflow migrates stores to: the pristine store's."""
    return schema_version(pristine_store())


def _install_fresh_store(db: Path) -> None:
    """Copy the pristine store to a private file next to `db`, then put it in place atomically (unless
    another process created one meanwhile): an `mlflow ui` opening the same path at that moment either sees
    no store (and makes its own, which this one then waits for) or a complete one, never half a migration."""
    staging = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        shutil.copyfile(pristine_store(), staging)
        # MLflow would have given the store's Default experiment the artifact folder ./mlruns/0 of the process
        # creating it (as `mlflow ui` run here would): this process, not the one that made the pristine copy.
        with contextlib.closing(sqlite3.connect(staging)) as connection, connection:
            now_ms = int(time.time() * 1000)
            connection.execute(
                "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                "WHERE experiment_id = 0",
                (os.path.join(os.path.abspath(ARTIFACT_ROOT), "0"), now_ms, now_ms),
            )
        os.link(staging, db)
    except FileExistsError:
        pass  # another process created the store first: opening waits for its migration to settle
    finally:
        staging.unlink(missing_ok=True)


def open_sqlite(db: Path) -> TrackingClient:
    """A client of the SQLite store `db`, created if missing; one netsweep process at a time, never while
    another process is migrating it, and never migrating one in place that another process can see (MLflow
    opens, creates and migrates the store as the client is made)."""
    from mlflow.exceptions import MlflowException  # deferred, as the client (the module docstring says why)

    from src.tracking.mlflow_client import TrackingClient  # deferred: importing mlflow takes about a second

    uri = SQLITE_PREFIX + str(db)
    with exclusive(db.with_name(db.name + ".lock")):
        if not db.exists():
            _install_fresh_store(db)
        head = latest_schema()
        for _attempt in range(3):
            wait_for_migrations(db, head)
            version = schema_version(db)
            try:
                return TrackingClient(uri)
            except MlflowException as exc:  # an out-of-date schema, unless someone was still migrating it
                if "out-of-date database schema" not in str(exc) or schema_version(db) == version:
                    raise
        return TrackingClient(uri)
