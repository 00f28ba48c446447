"""The training loop: the loss falls, runs reproduce, divergence stops at once, the best epoch is kept."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from src.config.schema import DigitsConfig
from src.data.loader import load_dataset
from src.nn.mlp import evaluate, init_params
from src.nn.optim import build_optimizer
from src.nn.train import EPOCH_METRICS, Callbacks, Diverged, Progress, TrainingData, TrainSettings, fit


def _blobs(rng, n=300, d=10, k=3):
    centers = rng.normal(scale=3, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    X = (X - X.min()) / (X.max() - X.min())
    return X, y


def _fit(X, y, seed=0, lr=0.1, epochs=5, dtype=np.float32, on_epoch_end=None, decay=1e-4, batch_size=16, factor=100.0):
    rng = np.random.default_rng(seed)
    params = init_params(X.shape[1], 32, 3, rng, dtype=dtype)
    optimizer = build_optimizer("sgd", params, lr=lr, decay=decay)
    return fit(
        params,
        TrainingData(X[:200], y[:200], X[200:], y[200:]),
        optimizer=optimizer,
        settings=TrainSettings(batch_size=batch_size, epochs=epochs, divergence_factor=factor),
        progress=Progress.start(rng),
        callbacks=Callbacks(on_epoch_end=on_epoch_end),
    )


def test_loss_falls_on_a_tiny_fit(rng):
    X, y = _blobs(rng)
    result = _fit(X, y, epochs=15)
    losses = result.history.metrics["train_loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history.metrics["val_acc"][-1] > 0.9


def test_same_seed_same_metrics_other_seed_other_metrics(rng):
    X, y = _blobs(rng)
    first, second, other = _fit(X, y, seed=3), _fit(X, y, seed=3), _fit(X, y, seed=4)
    for name in EPOCH_METRICS[:-1]:  # epoch_time_s is wall time
        assert first.history.metrics[name] == second.history.metrics[name]
    assert first.history.metrics["val_loss"] != other.history.metrics["val_loss"]


def test_best_validation_loss_parameters_are_kept(rng):
    X, y = _blobs(rng)
    seen = []
    result = _fit(X, y, lr=2.0, epochs=12, on_epoch_end=lambda epoch, row: seen.append((epoch, row["val_loss"])))
    assert [epoch for epoch, _ in seen] == list(range(1, 13))
    best_epoch = min(seen, key=lambda item: item[1])[0]
    assert result.best_epoch == best_epoch
    val_loss, _ = evaluate(result.params, X[200:], y[200:], 1e-4)
    assert val_loss == pytest.approx(seen[best_epoch - 1][1], rel=1e-5)


def test_divergence_stops_at_once_with_where_and_history(rng):
    X, y = _blobs(rng)
    with pytest.raises(Diverged) as caught:
        _fit(X, y, lr=1e4, epochs=5)
    stop = caught.value
    assert stop.epoch == 1 and stop.step >= 2
    assert not stop.cost <= stop.limit
    assert "epoch 1" in str(stop) and f"step {stop.step}" in str(stop)
    assert stop.history.epochs == 0


def test_a_finite_cost_above_the_bound_counts_as_divergence(rng):
    X, y = _blobs(rng)
    rows = []
    with pytest.raises(Diverged) as caught:  # lr 3 makes the cost swing above 1.5x its start, finitely
        _fit(X, y, lr=3.0, epochs=20, factor=1.5, on_epoch_end=lambda e, r: rows.append(r))
    stop = caught.value
    assert np.isfinite(stop.cost) and stop.cost > stop.limit
    assert "exceeds the limit" in str(stop)
    assert stop.history.epochs == len(rows) == stop.epoch - 1  # the history up to the divergence is kept


def test_float64_and_float32_paths_agree(rng):
    X, y = _blobs(rng)
    r32 = _fit(X, y, dtype=np.float32, epochs=3)
    r64 = _fit(X, y, dtype=np.float64, epochs=3)
    assert r64.params["W1"].dtype == np.float64 and r32.params["W1"].dtype == np.float32
    np.testing.assert_allclose(r32.history.metrics["val_loss"], r64.history.metrics["val_loss"], rtol=1e-3)


def test_accuracy_matches_scikit_learn_mlp_on_the_same_split():
    """Same width, batch, learning rate, epochs and L2 strength as MLPClassifier (plain SGD) on digits."""
    ds = load_dataset(DigitsConfig(name="digits", val_fraction=0.15, test_fraction=0.2), 0)
    rng = np.random.default_rng(0)
    params = init_params(ds.input_dim, 256, ds.num_classes, rng, dtype=np.float32)
    result = fit(
        params,
        TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val),
        optimizer=build_optimizer("sgd", params, lr=0.1, decay=1e-4),
        settings=TrainSettings(batch_size=32, epochs=30),
        progress=Progress.start(rng),
    )
    ours = evaluate(result.params, ds.X_test, ds.y_test, 1e-4)[1]
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(3):
            model = MLPClassifier(
                hidden_layer_sizes=(256,),
                solver="sgd",
                batch_size=32,
                learning_rate_init=0.1,
                momentum=0.0,
                alpha=2 * 1e-4 * 32,
                max_iter=30,
                random_state=seed,
                tol=0,
                n_iter_no_change=10**6,
            )
            theirs.append(model.fit(ds.X_train, ds.y_train).score(ds.X_test, ds.y_test))
    assert min(theirs) - 0.02 <= ours <= max(theirs) + 0.02, (ours, theirs)
    assert ours >= 0.95


def test_the_validation_cross_entropy_leaves_the_decay_penalty_out(rng):
    X, y = _blobs(rng)
    plain = _fit(X, y, epochs=3, decay=0.0).history.metrics
    assert plain["val_ce"] == plain["val_loss"]
    decayed = _fit(X, y, epochs=3, decay=1e-2)
    ce, _ = evaluate(decayed.params, X[200:], y[200:], 0.0)
    cost, _ = evaluate(decayed.params, X[200:], y[200:], 1e-2)
    penalty = cost - ce
    assert penalty > 0
    kept = decayed.best_epoch - 1  # the params returned are the best epoch's
    metrics = decayed.history.metrics
    assert metrics["val_ce"][kept] == pytest.approx(ce, rel=1e-6)
    assert metrics["val_loss"][kept] - metrics["val_ce"][kept] == pytest.approx(penalty, rel=1e-4)


def test_patience_runs_out_after_that_many_epochs_without_a_lower_validation_loss():
    settings = TrainSettings(batch_size=16, epochs=10, patience=3)
    assert settings.out_of_patience(5, best_epoch=2) == "no lower validation loss for 3 epochs (best at epoch 2)"
    assert settings.out_of_patience(4, best_epoch=2) is None
    assert settings.out_of_patience(10, best_epoch=2) is None  # the last epoch: training ends anyway
    assert TrainSettings(batch_size=16, epochs=10).out_of_patience(9, best_epoch=1) is None  # no patience set


def test_a_fit_stops_when_its_patience_runs_out(rng):
    X, y = _blobs(rng)
    params = init_params(X.shape[1], 32, 3, rng)
    settings = TrainSettings(batch_size=16, epochs=200, patience=2)
    data = TrainingData(X[:200], y[:200], X[200:], y[200:])
    optimizer = build_optimizer("sgd", params, lr=2.0, decay=1e-4)
    result = fit(params, data, optimizer=optimizer, settings=settings, progress=Progress.start(rng))
    assert result.epochs_trained < 200 and result.epochs_trained - result.best_epoch == 2
    assert result.stopped == f"no lower validation loss for 2 epochs (best at epoch {result.best_epoch})"
