"""Optimizer update equations, checked by hand on tiny parameters."""

import numpy as np
import pytest

from src.nn.optim import OPTIMIZERS, build_optimizer


def _setup():
    params = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([0.5, 0.5]), "W2": np.array([[3.0]]), "b2": np.array([1.0])}
    grads = {"W1": np.array([[0.1, 0.2]]), "b1": np.array([1.0, -1.0]), "W2": np.array([[0.5]]), "b2": np.array([2.0])}
    return params, grads


def _copy(tree):
    return {k: v.copy() for k, v in tree.items()}


def test_sgd_is_a_step_on_the_full_cost_with_decay_on_weights_only():
    params, grads = _setup()
    lr, decay = 0.1, 0.01
    expected = {k: params[k] - lr * (grads[k] + (2 * decay * params[k] if k.startswith("W") else 0)) for k in params}
    optimizer = build_optimizer({"name": "sgd", "lr": lr, "batch_size": 32}, params, decay)
    scaled = {k: optimizer.grad_scale * g for k, g in grads.items()}  # what the backward pass hands SGD
    optimizer.step(params, scaled)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps_by_hand(nesterov):
    params, grads = _setup()
    lr, mu, decay = 0.1, 0.9, 0.01
    expected, velocity = _copy(params), {k: np.zeros_like(v) for k, v in params.items()}
    optimizer = OPTIMIZERS["momentum"](params, lr=lr, decay=decay, momentum=mu, nesterov=nesterov)
    for _ in range(2):
        for k in expected:
            g = grads[k] + (2 * decay * expected[k] if k.startswith("W") else 0)
            velocity[k] = mu * velocity[k] - lr * g
            expected[k] = expected[k] + (mu * velocity[k] - lr * g if nesterov else velocity[k])
        optimizer.step(params, _copy(grads))
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)


def test_adam_three_steps_by_hand():
    params, grads = _setup()
    lr, b1, b2, eps, decay = 0.01, 0.9, 0.999, 1e-8, 0.05
    expected = _copy(params)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(val) for k, val in params.items()}
    optimizer = OPTIMIZERS["adam"](params, lr=lr, decay=decay, beta1=b1, beta2=b2, eps=eps)
    for t in range(1, 4):
        for k in expected:
            g = grads[k] + (2 * decay * expected[k] if k.startswith("W") else 0)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            expected[k] = expected[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        optimizer.step(params, _copy(grads))
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-10)
