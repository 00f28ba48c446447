"""The trained net as an MLflow model, end to end: a run on MNIST-format images it never saw (an .npz), its
model loaded with mlflow.pyfunc; a sweep's winner registered and served by `mlflow models serve`."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from src.data.idx import load_idx_folder

from ..helpers import cli_env, read_store, wait_for

pytestmark = pytest.mark.slow
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("pixels", ["uint8", "float32"])
def test_a_run_on_unseen_mnist_format_images_is_a_model_that_predicts_them_exactly(cli, pixels):
    arrays = load_idx_folder(FASHION)
    images = {k: arrays[k][:3000] if "train" in k else arrays[k][:600] for k in arrays}
    if pixels == "float32":
        images["X_train"], images["X_test"] = (images[k].astype(np.float32) / 255 for k in ("X_train", "X_test"))
    np.savez(cli.cwd / "unseen.npz", **images)
    result = cli("data=npz", f"data.path={cli.cwd / 'unseen.npz'}", "epochs=2", "model.hidden_size=64")
    assert result.returncode == 0, result.stderr
    (run,) = read_store(cli.uri).runs
    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    (spec,) = model.metadata.get_input_schema().inputs
    assert spec.shape == (-1, 28, 28) and spec.type == np.dtype(pixels)
    accuracy = np.mean(model.predict(images["X_test"]) == images["y_test"])
    assert accuracy == run.data.metrics["test_acc"]  # exactly


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_registered_winner_is_served(cli):
    result = cli(
        "-m",
        "optimizer.lr=0.03,0.3",
        "epochs=3",
        "hydra.launcher.register_best=digits-net",
        "hydra.launcher.progress_interval_s=0",
    )
    assert result.returncode == 0, result.stderr
    assert "registered: models:/digits-net@best is version 1" in result.stdout
    assert "winner run" in result.stdout and "mlflow.models.evaluate" in result.stdout
    mlflow.set_tracking_uri(cli.uri)
    client = mlflow.MlflowClient(cli.uri)
    version = client.get_model_version_by_alias("digits-net", "best")
    assert version.tags["sweep_id"] and version.tags["best_val_acc"]
    wait_for(lambda: "netsweep.evaluated" in client.get_run(version.run_id).data.tags, timeout=180)  # its tag last
    assert {"per_class_metrics.csv", "confusion_matrix.png"} <= {a.path for a in client.list_artifacts(version.run_id)}
    local = mlflow.pyfunc.load_model("models:/digits-net@best")
    test = np.random.default_rng(0).integers(0, 17, size=(5, 8, 8)).astype(np.uint8)  # digits: 8x8, 0..16
    port = _free_port()
    server = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/digits-net@best",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=cli.cwd,
        env=cli_env(cli.uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        answer = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": test.tolist()})
        assert answer["predictions"] == local.predict(test).tolist()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _post(url: str, body: dict, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
