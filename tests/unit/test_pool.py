"""Where jobs run: worker counts, thread limits, settings no pool could use, and stores workers elsewhere
could not reach."""

from types import SimpleNamespace

import pytest

from src.errors import ConfigError
from src.sweep.pool import WorkerPool, effective_n_jobs, remote_hosts, worker_threads
from src.sweep.settings import LauncherSettings


def _settings(**changes):
    return SimpleNamespace(**{"backend": "loky", "address": None, "n_jobs": -1, **changes})


def test_workers_are_capped_by_tasks_and_share_the_cores(monkeypatch):
    monkeypatch.setattr("src.sweep.pool.cpu_count", lambda: 8)
    assert effective_n_jobs(-1, 3) == 3 and effective_n_jobs(-1, 20) == 8 and effective_n_jobs(2, 20) == 2
    assert worker_threads(2) == 4 and worker_threads(16) == 1
    assert WorkerPool(_settings(n_jobs=2), n_tasks=5).threads == 4
    assert WorkerPool(_settings(backend="dask"), n_tasks=5).threads is None  # Dask's nanny sets them


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"backend": "ray"}, "hydra.launcher.backend=ray is invalid: use one of loky, dask"),
        ({"address": "tcp://h:1"}, "only used with hydra.launcher.backend=dask"),
        ({"n_jobs": 0}, "hydra.launcher.n_jobs=0"),
    ],
)
def test_unusable_settings_are_named(changes, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        LauncherSettings(**changes)


def test_a_local_store_is_refused_when_workers_are_elsewhere():
    assert remote_hosts(["tcp://127.0.0.1:3000", "tcp://10.1.2.3:4000"]) == ["10.1.2.3"]
    pool = WorkerPool(_settings(backend="dask", address="tcp://x:1"), n_tasks=4)
    pool._client = SimpleNamespace(scheduler_info=lambda: {"workers": {"tcp://10.1.2.3:4000": {}}})
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI=http"):
        pool.check_store("sqlite:////tmp/mlflow.db")
    pool.check_store("http://10.0.0.1:5000")  # a server is reachable from anywhere
    pool._client = SimpleNamespace(scheduler_info=lambda: {"workers": {"tcp://127.0.0.1:4000": {}}})
    pool.check_store("sqlite:////tmp/mlflow.db")  # workers on this machine share its disk


def test_a_local_pool_runs_calls_and_stops_its_workers():
    pool = WorkerPool(_settings(n_jobs=2), n_tasks=2).open()
    assert sorted(pool.run([(pow, (2, 3)), (pow, (3, 2))])) == [8, 9]
    pool.close()
    assert pool._slots._slots == []
