"""Opening a tracking store: the URI resolved and checked, then the MLflow implementation imported and
the store opened, once per URI and process; and a finished run's `mlflow.models.evaluate` handed to a
process of its own (`evaluate_later`). No mlflow imported here.

Importing mlflow costs about a second, so it happens in `open_store` (or in the background, `preload`),
never when netsweep's modules are imported: a typo on the command line is answered at once.
"""

import contextlib
import importlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from src.errors import ConfigError
from src.tracking import names, remote
from src.tracking.api import Store

DEFAULT_URI = "sqlite:///mlflow.db"
SQLITE_PREFIX = "sqlite:///"
IMPLEMENTATION = "src.tracking.mlflow_store"  # the module that imports mlflow
URI_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")


def resolve_uri(configured: str | None) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.

    A relative SQLite path is made absolute so that workers in other directories write to the same store.
    A password in the URI is refused: every run would record it in its params.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    parsed = urlparse(uri)
    if parsed.password:
        shown = parsed._replace(netloc=parsed.hostname or "").geturl()
        raise ConfigError(
            f"the tracking URI {shown}{_origin(uri)} holds a password: take it out and set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
        )
    if uri.startswith(SQLITE_PREFIX):
        path = Path(uri[len(SQLITE_PREFIX) :]).expanduser()
        uri = SQLITE_PREFIX + str(path if path.is_absolute() else path.resolve())
    return uri


def _origin(uri: str) -> str:
    return " (from MLFLOW_TRACKING_URI)" if os.environ.get("MLFLOW_TRACKING_URI") == uri else ""


def check_uri(uri: str) -> None:
    """Refuse a URI MLflow would misread (a bare path, an unknown scheme, a SQLite file in a missing folder),
    saying what to write instead."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if not scheme:
        path = Path(uri).expanduser().resolve()
        advice = (
            f"for the folder store there write file://{path}"
            if path.is_dir()
            else f"for a SQLite store write sqlite:///{path}"
        )
        raise ConfigError(f"the tracking URI {uri!r}{_origin(uri)} is a path, not a URI: {advice}")
    if scheme not in URI_SCHEMES:
        raise ConfigError(
            f"the tracking URI {uri!r}{_origin(uri)} has an unknown scheme {parsed.scheme!r}: use "
            "sqlite:///path/to/mlflow.db or http(s)://host:port of a tracking server"
        )
    folder = Path(uri[len(SQLITE_PREFIX) :]).parent if uri.startswith(SQLITE_PREFIX) else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(
            f"the tracking URI {uri!r}{_origin(uri)} names a file in {folder}, which does not exist: "
            "create the folder or choose another path"
        )


def is_local_file(uri: str) -> bool:
    """True for a store that lives in a file of this machine (workers elsewhere cannot write to it)."""
    return uri.startswith(("sqlite:", "file:", "/"))


def _implementation() -> Any:
    return importlib.import_module(IMPLEMENTATION)  # deferred: importing mlflow takes about a second


def _import_and_warm_up() -> None:
    _implementation().warm_up()


def preload() -> threading.Thread:
    """Import the mlflow side in a thread, overlapping it with work that does not need it; the thread then
    starts the work a process that records runs does once (MLflow's check of a model's requirements, see
    src/tracking/mlflow_store.py), which goes on beside the run. Join the thread before `open_store`. Nothing
    is imported when a writer process opens this process's stores (src/tracking/remote.py)."""
    thread = threading.Thread(target=None if remote.started() else _import_and_warm_up, daemon=True)
    thread.start()
    return thread


_OPENED: dict[str, Store] = {}  # uri -> its store: a process opens (creates, migrates, checks) each store once


def open_store(uri: str) -> Store:
    """The store at `uri` (src/tracking/mlflow_store.py), created (and migrated) on first use; later calls in
    the same process (the configs a worker trains, the parent's steps) get the same one. A single run's
    command opens it in its writer process instead, when that was started (src/tracking/remote.py)."""
    if uri not in _OPENED:
        check_uri(uri)
        _OPENED[uri] = remote.open_store(uri) if remote.started() else _implementation().connect(uri)
    return _OPENED[uri]


def open_existing_store(uri: str) -> Store:
    """`open_store` for commands that only read a store: a SQLite file that is not there is an error, not a
    new empty store."""
    path = Path(uri.removeprefix(SQLITE_PREFIX))
    if uri.startswith(SQLITE_PREFIX) and not path.is_file():
        raise LookupError(
            f"no tracking store at {path}: run this where mlflow.db is, or pass --tracking-uri "
            "(or set MLFLOW_TRACKING_URI)"
        )
    return open_store(uri)


CODE_ROOT = str(Path(__file__).resolve().parents[2])  # where `src` is imported from, installed or not
EVALUATED_BY = "mlflow.models.evaluate on the test split"  # the value of the run's names.EVALUATED tag
_EVALUATE = "import sys; from src.tracking.opening import evaluate_saved; sys.exit(evaluate_saved(sys.argv[1:]))"


def evaluate_later(
    uri: str, run_id: str, images: np.ndarray, labels: np.ndarray, log: Path | None = None, classes: Sequence[str] = ()
) -> int:
    """Evaluate the finished run's model with `mlflow.models.evaluate` on (images, labels) in a process of
    its own, which goes on after this one has ended (its own session: a Ctrl-C at the terminal does not
    reach it); its output goes to `log`. Returns its pid.

    What it records appears on the run (metrics, per_class_metrics.csv, confusion_matrix.png, the
    evaluation dataset), the tag names.EVALUATED last: a run without that tag has no evaluation, or an
    unfinished one (the process was killed), and the run itself is never reopened (its status stays)."""
    handle, arrays = tempfile.mkstemp(prefix="netsweep-evaluation-", suffix=".npz")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, images=images, labels=labels, classes=np.array(list(classes), dtype=str))
    try:
        with contextlib.ExitStack() as stack:  # the child holds its own copy of the log's file
            output = stack.enter_context(open(log, "ab")) if log is not None else subprocess.DEVNULL
            process = subprocess.Popen(
                [sys.executable, "-c", _EVALUATE, uri, run_id, arrays],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [CODE_ROOT, os.environ.get("PYTHONPATH")])),
                },
                start_new_session=True,
            )
    except OSError:
        Path(arrays).unlink(missing_ok=True)
        raise
    return process.pid


def evaluate_saved(argv: list[str]) -> int:
    """The process `evaluate_later` starts: [uri, run id, the .npz of images and labels (removed once
    read)]. Exit code 0 once the run is evaluated and tagged."""
    uri, run_id, arrays = argv
    try:
        with np.load(arrays, allow_pickle=False) as saved:
            images, labels = saved["images"], saved["labels"]
            classes = [str(c) for c in saved["classes"]] if "classes" in saved.files else []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(arrays)
    store = open_store(uri)
    store.evaluate_model(run_id, images, labels, classes)
    store.run_log(run_id).set_tags({names.EVALUATED: EVALUATED_BY})
    print(f"run {run_id} evaluated with mlflow.models.evaluate", flush=True)
    return 0
