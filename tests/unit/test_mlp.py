"""The net's mathematics: gradients against central differences, stability, and the fast path."""

import numpy as np
import pytest

from src.nn.mlp import Workspace, cost_grad, evaluate, forward, init_params, log_softmax, predict, softmax


def _params(rng, d=7, H=5, k=4, dtype=np.float64):
    params = init_params(d, H, k, rng, dtype=dtype)
    params["b1"] += rng.normal(scale=0.1, size=H)  # non-zero biases exercise their gradients
    params["b2"] += rng.normal(scale=0.1, size=k)
    return params


def _numeric_grad(params, X, y, decay, name, eps=1e-6):
    grad = np.zeros_like(params[name])
    for index in np.ndindex(grad.shape):
        saved = params[name][index]
        params[name][index] = saved + eps
        plus, _ = cost_grad(params, X, y, decay)
        params[name][index] = saved - eps
        minus, _ = cost_grad(params, X, y, decay)
        params[name][index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("targets", ["labels", "onehot"])
def test_cost_grad_matches_central_differences_with_strong_decay(rng, targets):
    params = _params(rng)
    X = rng.normal(size=(11, 7))
    y = rng.integers(0, 4, size=11)
    if targets == "onehot":
        y = np.eye(4)[y]
    _, grads = cost_grad(params, X, y, decay=1.0)
    assert set(grads) == {"W1", "b1", "W2", "b2"}
    for name in ("W1", "b1", "W2", "b2"):
        numeric = _numeric_grad(params, X, y, 1.0, name)
        relative = np.linalg.norm(grads[name] - numeric) / np.linalg.norm(grads[name] + numeric)
        assert relative < 1e-5, (name, relative)


def test_cost_is_cross_entropy_plus_decay_on_weights_only(rng):
    params = _params(rng)
    X, y = rng.normal(size=(6, 7)), rng.integers(0, 4, size=6)
    z, _ = forward(params, X)
    p = softmax(z)
    expected_ce = -np.mean(np.log(p[np.arange(6), y]))
    decay = 0.3
    expected = expected_ce + decay * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    cost, _ = cost_grad(params, X, y, decay)
    assert cost == pytest.approx(expected, rel=1e-12)
    params["b1"] += 100.0  # biases are not decayed: the penalty must not change with them
    cost_b, _ = cost_grad(params, X, y, decay)
    penalty_b = cost_b - cost_grad(params, X, y, 0.0)[0]
    assert penalty_b == pytest.approx(cost - expected_ce, rel=1e-9)


def test_softmax_and_log_softmax_are_stable_at_extreme_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    logp = log_softmax(z)
    assert np.isfinite(logp).all()
    np.testing.assert_allclose(logp[0], [0.0, -2e4, -1e4])
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)
    np.testing.assert_allclose(softmax(z)[1], 1 / 3)
    np.testing.assert_allclose(np.exp(logp[2, :2]), 0.5)


def test_cost_is_finite_when_the_true_class_has_vanishing_probability(rng):
    params = _params(rng, d=2, H=2, k=2)
    params["W1"][:] = [[1e3, 0], [0, 1e3]]
    params["W2"][:] = [[10, -10], [-10, 10]]
    X, y = np.array([[1.0, 0.0]]), np.array([1])  # logits ~ +-1e4, true class ~ exp(-2e4)
    cost, grads = cost_grad(params, X, y, 0.0)
    assert np.isfinite(cost) and cost > 1e3
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_workspace_matches_reference_cost_grad(rng, dtype):
    params = _params(rng, d=20, H=16, k=5, dtype=dtype)
    params = {k: v.astype(dtype) for k, v in params.items()}
    X = rng.random((9, 20)).astype(dtype)
    y = rng.integers(0, 5, size=9)
    workspace = Workspace(params, batch_size=12)  # larger than the batch: the last batch of an epoch
    mean_ce, correct = workspace.data_cost_grad(params, X, y)
    cost, grads = cost_grad(params, X, y, decay=0.0)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert mean_ce == pytest.approx(cost, rel=tol)
    assert correct == np.count_nonzero(predict(params, X) == y)
    for name in grads:
        assert workspace.grads[name].dtype == dtype
        np.testing.assert_allclose(workspace.grads[name], grads[name], rtol=tol * 10, atol=tol)


def test_init_follows_the_assignment_variances():
    params = init_params(400, 300, 10, np.random.default_rng(0))
    assert np.var(params["W1"]) == pytest.approx(2 / 700, rel=0.05)
    assert np.var(params["W2"]) == pytest.approx(4 / 310, rel=0.1)
    assert not params["b1"].any() and not params["b2"].any()
    assert init_params(4, 3, 2, np.random.default_rng(0), dtype=np.float32)["W1"].dtype == np.float32


def test_evaluate_and_predict_agree_across_chunks(rng, monkeypatch):
    import src.nn.mlp as mlp

    params = _params(rng)
    X, y = rng.normal(size=(50, 7)), rng.integers(0, 4, size=50)
    whole = evaluate(params, X, y, 0.1)
    monkeypatch.setattr(mlp, "EVAL_CHUNK", 7)
    assert evaluate(params, X, y, 0.1) == pytest.approx(whole)
    assert whole[0] == pytest.approx(cost_grad(params, X, y, 0.1)[0])
    assert whole[1] == np.mean(predict(params, X) == y)
