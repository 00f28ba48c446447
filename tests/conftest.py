"""Shared fixtures: a random generator, a fresh tracking store per test, the CLI in a fresh folder."""

import shutil

import numpy as np
import pytest

from .helpers import run_cli


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session", autouse=True)
def _pristine_store_cache(tmp_path_factory):
    """The cache of pristine migrated stores (src/tracking/sqlite_files.py) in this session's own folder,
    for the tests and the CLI processes they start, never in the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def _store_template(tmp_path_factory):
    """A migrated, empty SQLite store, made once: copying it costs milliseconds, migrating one a second."""
    from src.tracking.opening import open_store

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def store_uri(tmp_path, _store_template):
    """A tracking URI of this test's own, empty store."""
    path = tmp_path / "mlflow.db"
    shutil.copy(_store_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in this test's folder with its own store: cli(*args, **kwargs) -> CompletedProcess."""

    def run(*args, **kwargs):
        return run_cli(list(args), tmp_path, **kwargs)

    run.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run.cwd = tmp_path
    return run
