"""`src.predict` says Fashion-MNIST's predictions by class name (the issue: predictions said 0-9), and only
where the model is a run's whose data has named classes."""

import numpy as np

from src.outcomes import Outcome
from src.predict import class_names, counts_text, first_text
from src.tracking import names

from ..fakes import FakeStore


def _run(store, data):
    run = store.create_run(store.experiment_id("netsweep"), "r", {})
    run.log_params({names.DATA_NAME: data})
    run.close(Outcome.FINISHED)
    return run.run_id


def test_a_fashion_runs_predictions_are_said_by_class_name():
    store = FakeStore()
    fashion, digits = _run(store, "fashion_mnist"), _run(store, "digits")
    labels = class_names(store, fashion, 10)
    assert labels is not None and labels[0] == "T-shirt/top" and labels[9] == "Ankle boot"
    assert class_names(store, f"runs:/{fashion}/model", 10) == labels
    assert class_names(store, digits, 10) is None  # digits are their own names
    assert class_names(store, fashion, 3) is None  # a net of another number of classes: no names to guess
    assert class_names(store, "models:/net@best", 10) is None and class_names(store, "nope", 10) is None
    predicted = np.array([9, 0, 9])
    assert counts_text(predicted, 10, labels) == "predicted 3 images: 0 T-shirt/top: 1, 9 Ankle boot: 2"
    assert first_text(predicted, labels) == "first predictions: 9 (Ankle boot), 0 (T-shirt/top), 9 (Ankle boot)"
    assert counts_text(predicted, 10, None) == "predicted 3 images: 0: 1, 9: 2"
    assert first_text(predicted, None) == "first predictions: 9 0 9"
