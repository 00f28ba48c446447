"""Sweeps on a real Dask cluster logging to a real MLflow tracking server with basic authentication (the
README's recipe), all on 127.0.0.1.

Each fixture starts its processes in their own session and stops the whole group when done.
"""

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from ..helpers import read_store, run_cli

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _start(args, cwd, log):
    return subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_until(check, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not come up in {timeout} s")


CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(16)}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth`; this test process and every worker authenticate through
    MLflow's standard environment variables."""
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    (folder / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder}/auth.db\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\nauth_cache_ttl_seconds = 60\n"
    )
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": CREDENTIALS["MLFLOW_TRACKING_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{folder}/server.db",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    uri = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # for this process's own reads of the store
    try:
        _wait_until(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, "mlflow server")
        yield uri
    finally:
        _stop(server)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A `dask scheduler` and two single-threaded `dask worker` processes."""
    folder = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = open(folder / "dask.log", "w")  # noqa: SIM115 (open while the cluster runs; closed at teardown)
    processes = [
        _start(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
            folder,
            log,
        )
    ]
    processes += [
        subprocess.Popen(
            ["dask", "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **CREDENTIALS},
        )
        for _ in range(2)
    ]
    client = None
    try:

        def two_workers():
            nonlocal client
            client = client or distributed.Client(address, timeout=5, set_as_default=False)
            return len(client.scheduler_info()["workers"]) == 2

        _wait_until(two_workers, "dask scheduler and workers")
        yield SimpleNamespace(address=address, client=client)
    finally:
        if client is not None:
            client.close()
        for process in processes[::-1]:
            _stop(process)
        log.close()


def _sweep(tmp_path, tracking_uri, *args):
    return run_cli(["-m", *args], tmp_path, uri=tracking_uri, background=True, env_extra=CREDENTIALS)


def _experiment_runs(uri, experiment):
    view = read_store(uri, experiment)
    return view.client, view.runs


def test_sweep_on_dask_workers_logs_everything_through_the_server(tmp_path, mlflow_server, dask_cluster):
    sweep = _sweep(
        tmp_path,
        mlflow_server,
        "optimizer.lr=0.05,0.1",
        "model.decay=0,1e-4",
        "epochs=3",
        "hydra.launcher.backend=dask",
        f"hydra.launcher.address={dask_cluster.address}",
        "tracking.experiment=on-dask",
    )
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr
    client, runs = _experiment_runs(mlflow_server, "on-dask")
    children = [r for r in runs if r.data.tags.get("netsweep.role") != "sweep"]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    worker_pids = {str(pid) for pid in dask_cluster.client.run(os.getpid).values()}
    assert {r.data.tags["worker_pid"] for r in children} <= worker_pids  # trained on the Dask workers
    for run in children:
        assert "figure1.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
    (parent,) = [r for r in runs if r.data.tags.get("netsweep.role") == "sweep"]
    assert "report" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    _assert_no_credentials(client, runs)


def _assert_no_credentials(client, runs):
    """The password is in no param, tag or text artifact of any run."""
    password = CREDENTIALS["MLFLOW_TRACKING_PASSWORD"]
    for run in runs:
        assert password not in json.dumps([run.data.params, run.data.tags])
        with tempfile.TemporaryDirectory() as folder:
            local = Path(client.download_artifacts(run.info.run_id, "", folder))
            texts = [p for p in local.rglob("*") if p.suffix in (".yaml", ".json", ".csv", ".md", ".txt")]
            assert texts and not [p for p in texts if password in p.read_text()]


def test_the_tracking_server_refuses_requests_without_credentials(mlflow_server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5)
    assert refused.value.code == 401
    wrong = base64.b64encode(b"admin:not-the-password").decode()
    request = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Authorization": f"Basic {wrong}"}
    )
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(request, timeout=5)
    assert rejected.value.code == 401


def test_pruning_decisions_reach_dask_workers_through_the_server(tmp_path, mlflow_server, dask_cluster):
    sweep = _sweep(
        tmp_path,
        mlflow_server,
        "optimizer.lr=0.3,0.1,0.01,0.003",
        "epochs=6",
        "hydra.launcher.prune=asha",
        "hydra.launcher.backend=dask",
        f"hydra.launcher.address={dask_cluster.address}",
        "tracking.experiment=pruned-on-dask",
    )
    _, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr
    _, runs = _experiment_runs(mlflow_server, "pruned-on-dask")
    children = {r.data.params["optimizer.lr"]: r for r in runs if r.data.tags.get("netsweep.role") != "sweep"}
    outcomes = {lr: (r.info.status, r.data.tags["outcome"]) for lr, r in children.items()}
    assert outcomes["0.3"] == ("FINISHED", "finished")
    assert ("FINISHED", "pruned") in outcomes.values()
    for run in children.values():
        if run.data.tags["outcome"] == "pruned":
            assert run.data.metrics["epochs_trained"] < 6 and "asha rung" in run.data.tags["netsweep.pruned"]


def test_a_lost_dask_worker_costs_its_config_one_epoch_and_the_retry_continues_it(
    tmp_path, mlflow_server, dask_cluster
):
    sweep = _sweep(
        tmp_path,
        mlflow_server,
        "epochs=2,400",
        "threads=1",
        "hydra.launcher.backend=dask",
        f"hydra.launcher.address={dask_cluster.address}",
        "tracking.experiment=lost-worker",
        "hydra.launcher.progress_interval_s=1",
    )

    def long_config():
        client, runs = _experiment_runs(mlflow_server, "lost-worker")
        for run in runs:
            long = run.info.status == "RUNNING" and run.data.params.get("epochs") == "400"
            if long and len(client.get_metric_history(run.info.run_id, "val_acc")) >= 5:
                return run
        return None

    _wait_until(long_config, "the long config")
    victim = long_config()
    os.kill(int(victim.data.tags["worker_pid"]), signal.SIGKILL)
    _, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, stderr  # Dask retried the config on the other worker, which went on
    assert "Traceback" not in stderr
    client, runs = _experiment_runs(mlflow_server, "lost-worker")
    children = [r for r in runs if r.data.tags.get("netsweep.role") != "sweep"]
    assert sorted(r.data.tags["outcome"] for r in children) == ["finished", "finished"]
    continued = next(r for r in children if r.data.params.get("epochs") == "400")
    assert continued.info.run_id == victim.info.run_id  # in the same run, from its checkpoint ...
    assert continued.data.tags["worker_pid"] != victim.data.tags["worker_pid"]  # ... on another worker
    steps = sorted(m.step for m in client.get_metric_history(continued.info.run_id, "val_acc"))
    assert steps == list(range(1, 401))  # each epoch logged once
    _wait_until(lambda: len(dask_cluster.client.scheduler_info()["workers"]) == 2, "the restarted worker")


def test_local_cluster_is_started_and_stopped_by_the_sweep(cli):
    result = cli("-m", "optimizer.lr=0.05,0.1", "epochs=2", "hydra.launcher.backend=dask", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr
    _, runs = _experiment_runs(cli.uri, "netsweep")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
