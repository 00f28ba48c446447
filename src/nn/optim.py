"""Optimizers that update the parameters in place, with the weight-decay gradient folded into the step.

Each `step(params, grads)` receives the gradient of the mean cross-entropy only, multiplied by the
optimizer's `grad_scale` (the training loop's buffers, which the optimizer may overwrite), and adds the
decay term's gradient 2 * decay * W for the weights W1 and W2, so the update is exactly a step on the
assignment's full cost.

Adding an optimizer takes two steps: its class here (listed in `OPTIMIZERS`, with its knobs as typed
keyword arguments and their allowed ranges in `CHECKS`) and its YAML file in conf/optimizer/ giving every
knob a value. The config schema is derived from the class's signature.
"""

import inspect

import numpy as np

from src.nn.mlp import DECAYED


def _unit_interval(value: float) -> bool:
    return 0 <= value < 1


class SGD:
    """W <- W - lr * (g + 2 decay W), computed as W *= (1 - 2 lr decay); W -= lr g.

    `grad_scale` asks the backward pass for lr * g directly, which saves a pass over every gradient.
    """

    CHECKS: dict = {}  # knob -> (is it valid?, what to use instead)

    def __init__(self, params: dict, lr: float, decay: float):
        self.lr, self.decay = lr, decay
        self.shrink = 1 - 2 * lr * decay
        self.grad_scale = lr

    def step(self, params: dict, scaled_grads: dict) -> None:
        for name, value in params.items():
            if name in DECAYED and self.decay:
                value *= self.shrink
            value -= scaled_grads[name]


class Momentum:
    """Heavy-ball or Nesterov momentum: v <- mu v - lr g_full; W <- W + v (Nesterov: W + mu v - lr g_full)."""

    grad_scale = 1.0
    CHECKS = {"momentum": (_unit_interval, "use a value in [0, 1)")}

    def __init__(self, params: dict, lr: float, decay: float, momentum: float = 0.9, nesterov: bool = False):
        self.lr, self.decay, self.momentum, self.nesterov = lr, decay, momentum, nesterov
        self.velocity = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        for name, value in params.items():
            grad, velocity = grads[name], self.velocity[name]
            if name in DECAYED and self.decay:
                grad += (2 * self.decay) * value
            grad *= -self.lr  # now the plain gradient step
            velocity *= self.momentum
            velocity += grad
            if self.nesterov:
                value += grad
                value += self.momentum * velocity
            else:
                value += velocity


class Adam:
    """Adam (Kingma & Ba, 2015) on the full cost's gradient, with bias-corrected moment estimates."""

    grad_scale = 1.0
    CHECKS = {
        "beta1": (_unit_interval, "use a value in [0, 1)"),
        "beta2": (_unit_interval, "use a value in [0, 1)"),
        "eps": (lambda value: value > 0, "use an epsilon > 0, e.g. 1e-8"),
    }

    def __init__(
        self, params: dict, lr: float, decay: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        self.lr, self.decay, self.beta1, self.beta2, self.eps = lr, decay, beta1, beta2, eps
        self.mean = {name: np.zeros_like(value) for name, value in params.items()}
        self.var = {name: np.zeros_like(value) for name, value in params.items()}
        self.steps = 0

    def step(self, params: dict, grads: dict) -> None:
        self.steps += 1
        correction1 = 1 - self.beta1**self.steps
        correction2 = 1 - self.beta2**self.steps
        step_size = self.lr * np.sqrt(correction2) / correction1
        for name, value in params.items():
            grad, mean, var = grads[name], self.mean[name], self.var[name]
            if name in DECAYED and self.decay:
                grad += (2 * self.decay) * value
            mean *= self.beta1
            mean += (1 - self.beta1) * grad
            var *= self.beta2
            var += (1 - self.beta2) * grad * grad
            # The eps of the bias-corrected form, moved inside the uncorrected denominator.
            denominator = np.sqrt(var) + self.eps * np.sqrt(correction2)
            value -= step_size * mean / denominator


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
SHARED_ARGUMENTS = ("params", "lr", "decay")  # every optimizer takes these; the rest are its own knobs


def knobs(name: str) -> dict:
    """{knob: type} of optimizer `name`: the keyword arguments its class takes beyond the shared ones."""
    signature = inspect.signature(OPTIMIZERS[name])
    return {key: p.annotation for key, p in signature.parameters.items() if key not in SHARED_ARGUMENTS}


def build_optimizer(settings: dict, params: dict, decay: float):
    """An optimizer from its config (`name`, `lr` and its own knobs; `batch_size` belongs to the loop)."""
    options = {key: value for key, value in settings.items() if key not in ("name", "batch_size")}
    return OPTIMIZERS[settings["name"]](params, decay=decay, **options)
