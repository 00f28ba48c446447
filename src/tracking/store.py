"""Opening a tracking store, and the plain records it hands back (`RunRecord`): no mlflow imported here.

Importing mlflow costs about a second, so it happens in `open_store` (or in the background, `preload`),
never when netsweep's modules are imported: a typo on the command line is answered at once.
"""

import importlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from src.errors import ConfigError
from src.outcomes import Outcome
from src.tracking import names

DEFAULT_URI = "sqlite:///mlflow.db"
SQLITE_PREFIX = "sqlite:///"
CLIENT_MODULE = "src.tracking.client"  # the module that imports mlflow


def resolve_uri(configured: Optional[str]) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.

    A relative SQLite path is made absolute so that workers in other directories write to the same store.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if urlparse(uri).password:  # it would be recorded in every run's params
        raise ConfigError(f"the tracking URI {urlparse(uri)._replace(netloc=urlparse(uri).hostname or '').geturl()} "
                          "holds a password: take it out and set MLFLOW_TRACKING_USERNAME and "
                          "MLFLOW_TRACKING_PASSWORD instead")
    if uri.startswith(SQLITE_PREFIX) and not uri[len(SQLITE_PREFIX) :].startswith("/"):
        uri = SQLITE_PREFIX + str(Path(uri[len(SQLITE_PREFIX) :]).resolve())
    return uri


def is_local_file(uri: str) -> bool:
    """True for a store that lives in a file of this machine (workers elsewhere cannot write to it)."""
    return uri.startswith(("sqlite:", "file:", "/"))


def preload() -> threading.Thread:
    """Import the mlflow side in a thread, overlapping it with work that does not need it."""
    thread = threading.Thread(target=importlib.import_module, args=(CLIENT_MODULE,), daemon=True)
    thread.start()
    return thread


def open_store(uri: str):
    """A `Store` (src/tracking/client.py) for `uri`, created (and migrated) on first use."""
    client = importlib.import_module(CLIENT_MODULE)  # deferred: importing mlflow takes ~1 s
    return client.Store(uri)


def result_per_config(runs) -> dict:
    """{config_hash: run} over runs that ended with a result; a finished run wins over a diverged or pruned one."""
    best = {}
    for run in runs:
        key = run.tags.get(names.CONFIG_HASH)
        if key and run.outcome.is_result and (key not in best or run.outcome == Outcome.FINISHED):
            best[key] = run
    return best


@dataclass
class RunRecord:
    """One run as netsweep reads it back: what it is, how it stands, what it logged."""

    run_id: str
    name: str
    experiment_id: str
    outcome: Outcome
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # the last value of each metric
    tags: dict = field(default_factory=dict)  # netsweep's tags (MLflow's own are left out)
    parent_run_id: Optional[str] = None
    start_time_ms: int = 0
