"""Optimizer update equations, checked by hand on tiny parameters."""

import numpy as np
import pytest

from src.nn.mlp import cost_grad, decay_penalty, init_params
from src.nn.optim import OPTIMIZERS, SGD, Optimizer, build_optimizer
from src.nn.schedule import lr_factor
from src.nn.train import Callbacks, Progress, TrainingData, TrainSettings, fit


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
    optimizer = build_optimizer("sgd", params, lr=lr, decay=decay)
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


class Recording(Optimizer):
    """An optimizer that only records what the loop hands its `step`."""

    grad_scale = 0.5

    def __init__(self, decay: float):
        self.decay, self.seen = decay, []

    def step(self, params, grads):
        self.seen.append({k: g.copy() for k, g in grads.items()})


def test_the_loop_hands_step_the_scaled_cross_entropy_gradient_and_reads_the_decay_from_the_optimizer(rng):
    X, y = rng.random((24, 5)), rng.integers(0, 3, 24)
    params = init_params(5, 4, 3, rng)
    start = {k: v.copy() for k, v in params.items()}
    optimizer = Recording(decay=0.05)
    data = TrainingData(X[:16], y[:16], X[16:], y[16:])
    result = fit(
        params, data, optimizer=optimizer, settings=TrainSettings(batch_size=16, epochs=1), progress=Progress.start(rng)
    )
    (grads,) = optimizer.seen  # one full batch: one step
    _, expected = cost_grad(start, X[:16], y[:16], decay=0.0)  # the decay term is the optimizer's to add
    for k in params:
        np.testing.assert_allclose(grads[k], 0.5 * expected[k], rtol=1e-10, atol=1e-14)
    metrics = result.history.metrics
    assert metrics["val_loss"][0] - metrics["val_ce"][0] == pytest.approx(decay_penalty(start, 0.05), rel=1e-9)
    assert decay_penalty(start, 0.05) > 0


def test_every_optimizer_implements_the_contract():
    params, _ = _setup()
    for name, cls in OPTIMIZERS.items():
        optimizer = build_optimizer(name, params, lr=0.1, decay=0.01)
        assert isinstance(optimizer, Optimizer) and optimizer.decay == 0.01
        assert optimizer.grad_scale == (0.1 if cls is SGD else 1.0)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_schedule_scales_each_epochs_steps_from_the_configs_learning_rate(rng, name):
    X, y = rng.random((40, 5)), rng.integers(0, 3, 40)
    data = TrainingData(X[:32], y[:32], X[32:], y[32:])
    settings = TrainSettings(batch_size=8, epochs=4, schedule="cosine", lr_final=0.2)
    params = init_params(5, 4, 3, rng)
    optimizer = build_optimizer(name, params, lr=0.1, decay=0.01)
    seen = []
    callbacks = Callbacks(on_epoch_end=lambda epoch, row: seen.append((optimizer.lr, optimizer.grad_scale)))
    fit(params, data, optimizer=optimizer, settings=settings, progress=Progress.start(rng), callbacks=callbacks)
    factors = [lr_factor("cosine", epoch, 4, 0.2) for epoch in (1, 2, 3, 4)]
    assert factors[0] == 1.0 and factors == sorted(factors, reverse=True) and factors[-1] > 0.2
    assert [lr for lr, _ in seen] == [0.1 * f for f in factors] and optimizer.config_lr == 0.1
    assert [scale for _, scale in seen] == ([0.1 * f for f in factors] if name == "sgd" else [1.0] * 4)
    if name == "sgd":
        assert optimizer.shrink == 1 - 2 * (0.1 * factors[-1]) * 0.01


def test_the_schedules_factors():
    assert [lr_factor(None, e, 4) for e in (1, 4)] == [1.0, 1.0]
    assert [lr_factor("linear", e, 4, 0.2) for e in (1, 2, 3, 4)] == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert [lr_factor("cosine", e, 2) for e in (1, 2)] == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        lr_factor("step", 1, 4)
