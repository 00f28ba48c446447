"""A finished run's net as an MLflow model: loaded with mlflow.pyfunc, it predicts the run's test images
exactly; its signature, input example, requirements and training data are recorded; evaluation and the
registry the MLflow way, leaving MLflow's global state as it was; the predict command."""

import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.data.loader import load_dataset
from src.experiment.runner import evaluate_run, run_config
from src.predict import main as predict_main
from src.tracking.opening import open_store


@pytest.fixture
def trained(compose_cfg, store_uri):
    cfg = compose_cfg(f"tracking.uri={store_uri}", "epochs=3")
    return cfg, run_config(cfg)


def _pyfunc(store_uri, uri):
    """The model at `uri` (runs:/...) as MLflow users load it, resolved against `store_uri` (no global state set)."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=store_uri)
    return mlflow.pyfunc.load_model(local)


def test_the_model_predicts_the_runs_test_images_exactly(trained, store_uri):
    cfg, summary = trained
    model = _pyfunc(store_uri, f"runs:/{summary.run_id}/model")
    dataset = load_dataset(OmegaConf.to_object(cfg.data), cfg.seed)
    raw = dataset.X_test_raw
    assert raw.dtype == np.uint8 and raw.shape[1:] == (8, 8) and raw.max() == 16
    predicted = model.predict(raw)
    assert np.mean(predicted == dataset.y_test) == summary.test_acc  # exactly, not approximately
    probabilities = model.predict(raw[:4], params={"probabilities": True})
    assert list(probabilities.columns[:2]) == ["label", "p_0"] and np.allclose(probabilities.iloc[:, 1:].sum(axis=1), 1)
    net = model.unwrap_python_model()  # other layouts: rows, floats in [0, 1], a DataFrame
    assert (net.predict(None, dataset.X_test) == predicted).all()
    assert (net.predict(None, raw.reshape(len(raw), -1)) == predicted).all()


def test_the_model_carries_a_signature_an_example_and_netsweeps_requirements(trained, store_uri):
    _, summary = trained
    client = MlflowClient(store_uri)
    folder = client.download_artifacts(summary.run_id, "model")
    info = mlflow.models.Model.load(folder)
    (spec,) = info.signature.inputs.inputs
    assert spec.type == np.dtype("uint8") and spec.shape == (-1, 8, 8)
    assert info.signature.params.params[0].name == "probabilities"
    requirements = Path(folder, "requirements.txt").read_text()
    assert "numpy==" in requirements and "mlflow==" in requirements and "netsweep" not in requirements
    assert "import src" not in Path(folder, "pyfunc_net.py").read_text()  # self-contained
    example = mlflow.models.Model.load(folder).load_input_example(folder)
    assert np.asarray(example).shape == (5, 8, 8) and np.asarray(example).dtype == np.uint8


def test_the_training_data_is_the_runs_dataset_input(trained, store_uri):
    _, summary = trained
    run = MlflowClient(store_uri).get_run(summary.run_id)
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.name == "digits" and used.dataset.digest == run.data.tags["data_fingerprint"]
    assert {t.key: t.value for t in used.tags}["mlflow.data.context"] == "training"


def test_evaluation_names_classes_by_their_names_in_label_order(trained, store_uri, tmp_path):
    cfg, summary = trained
    store = open_store(store_uri)
    dataset = load_dataset(OmegaConf.to_object(cfg.data), cfg.seed)
    store.evaluate_model(summary.run_id, dataset.X_test_raw, dataset.y_test, tuple("abcdefghij"))
    path = MlflowClient(store_uri).download_artifacts(summary.run_id, "per_class_metrics.csv", str(tmp_path))
    rows = Path(path).read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == [f"{k} {name}" for k, name in enumerate("abcdefghij")]


def test_evaluation_logs_per_class_metrics_and_a_confusion_matrix(trained, store_uri):
    cfg, summary = trained
    client = MlflowClient(store_uri)
    ended = client.get_run(summary.run_id).info
    metrics = evaluate_run(open_store(store_uri), summary.run_id, cfg)
    assert metrics["accuracy_score"] == pytest.approx(summary.test_acc)
    artifacts = {a.path for a in client.list_artifacts(summary.run_id)}
    assert {"per_class_metrics.csv", "confusion_matrix.png"} <= artifacts
    after = client.get_run(summary.run_id).info
    assert (after.status, after.end_time) == ("FINISHED", ended.end_time)  # as the run ended
    with pytest.raises(Exception):  # noqa: B017 (whatever MLflow raises): a failed evaluation leaves the run as it was
        open_store(store_uri).evaluate_model(summary.run_id, np.zeros((3, 8, 8), np.uint8), np.zeros(2, int))
    after = client.get_run(summary.run_id).info
    assert (after.status, after.end_time) == ("FINISHED", ended.end_time)


def test_loading_and_evaluating_leave_mlflows_global_state_as_it_was(trained, store_uri, monkeypatch, tmp_path):
    cfg, summary = trained
    store = open_store(store_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = load_dataset(OmegaConf.to_object(cfg.data), cfg.seed)
    net = store.load_model(summary.run_id)
    assert np.mean(net.labels(dataset.X_test_raw) == dataset.y_test) == summary.test_acc
    assert not mlflow.tracking.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # a user's own setting: still theirs afterwards
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    store.evaluate_model(summary.run_id, dataset.X_test_raw, dataset.y_test)
    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere and mlflow.get_tracking_uri() == elsewhere
    assert mlflow.active_run() is None and not (tmp_path / "elsewhere.db").exists()


def test_registering_moves_the_alias_only_when_the_winner_changes(compose_cfg, store_uri):
    store = open_store(store_uri)
    first = run_config(compose_cfg(f"tracking.uri={store_uri}", "epochs=1")).run_id
    second = run_config(compose_cfg(f"tracking.uri={store_uri}", "epochs=1", "seed=1")).run_id
    assert store.register_model("net", first, "best", {"sweep_id": "s"}) == (1, True)
    assert store.register_model("net", first, "best", {"sweep_id": "s"}) == (1, False)
    assert store.register_model("net", second, "best", {"sweep_id": "s"}) == (2, True)
    assert MlflowClient(store_uri).get_model_version_by_alias("net", "best").run_id == second
    assert store.register_model("net", first, "best", {"sweep_id": "s"}) == (1, True)  # back: no new version
    assert len(MlflowClient(store_uri).search_model_versions("name = 'net'")) == 2
    assert store.load_model("models:/net@best").labels(np.zeros((2, 8, 8), np.uint8)).shape == (2,)
    assert store.load_model("models:/net/2").table(np.zeros((2, 64))).shape == (2, 11)  # label, p_0..p_9


def test_the_predict_command_scores_an_npz(trained, compose_cfg, store_uri, tmp_path, capsys):
    cfg, summary = trained
    dataset = load_dataset(OmegaConf.to_object(cfg.data), cfg.seed)
    np.savez(tmp_path / "images.npz", X_test=dataset.X_test_raw, y_test=dataset.y_test)
    assert (
        predict_main(
            [
                summary.run_id,
                str(tmp_path / "images.npz"),
                "--tracking-uri",
                store_uri,
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"accuracy {summary.test_acc:.4f}" in out and (tmp_path / "p.csv").read_text().startswith("image,label")
    np.savez(tmp_path / "bad.npz", weights=np.zeros(3))
    assert predict_main([summary.run_id, str(tmp_path / "bad.npz"), "--tracking-uri", store_uri]) == 2
    assert "none of X_test, X, images" in capsys.readouterr().err
    np.savez(tmp_path / "big.npz", X=np.zeros((2, 28, 28), np.uint8))
    assert predict_main([summary.run_id, str(tmp_path / "big.npz"), "--tracking-uri", store_uri]) == 2
    assert "images of 784 pixels each, but this net takes 64 (8x8 images" in capsys.readouterr().err
    np.savez(tmp_path / "bright.npz", X=np.full((2, 8, 8), 300))
    assert predict_main([summary.run_id, str(tmp_path / "bright.npz"), "--tracking-uri", store_uri]) == 2
    assert "pixel values from 300 to 300, but this net was trained on 0..16" in capsys.readouterr().err
    np.savez(tmp_path / "labels.npz", X=dataset.X_test_raw[:2], y=np.array([3, 20]))
    assert predict_main([summary.run_id, str(tmp_path / "labels.npz"), "--tracking-uri", store_uri]) == 2
    assert "labels from 3 to 20, but this net has 10 classes (0..9)" in capsys.readouterr().err
    assert (
        predict_main([summary.run_id, str(tmp_path / "big.npz"), "--tracking-uri", f"sqlite:///{tmp_path}/nowhere.db"])
        == 2
    )
    assert "no tracking store at" in capsys.readouterr().err and not (tmp_path / "nowhere.db").exists()
    assert predict_main(["0123abc", str(tmp_path / "images.npz"), "--tracking-uri", store_uri]) == 2
    assert f"no run '0123abc' in {store_uri}" in capsys.readouterr().err
    bare = run_config(compose_cfg(f"tracking.uri={store_uri}", "epochs=1", "tracking.log_model=false")).run_id
    assert predict_main([bare, str(tmp_path / "images.npz"), "--tracking-uri", store_uri]) == 2
    assert f"run {bare} saved no model (finished;" in capsys.readouterr().err
