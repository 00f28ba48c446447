"""Optimizers that update the parameters in place, with the weight-decay gradient folded into the step.

`Optimizer` is the contract the training loop relies on (what `step` may do with the gradient buffers,
what `grad_scale` asks of the backward pass, and that the optimizer owns the decay); SGD, Momentum and
Adam implement it, each an exact step on the assignment's full cost
mean cross-entropy + decay * (||W1||^2 + ||W2||^2).

Adding an optimizer takes three steps: its class here (an `Optimizer`, listed in `OPTIMIZERS`, with its
knobs as typed keyword arguments, their allowed ranges in `CHECKS`, and what it carries between steps in
`state`), its name in `OptimizerName` (src/config/schema.py) and its YAML file in conf/optimizer/ giving
every knob a value. The config schema is derived from the class's signature.
"""

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from src.nn.arrays import Params
from src.nn.mlp import DECAYED

Check = tuple[Callable[[Any], bool], str]  # (is the knob's value valid?, what to use instead)


def _unit_interval(value: float) -> bool:
    return 0 <= value < 1


class Optimizer(ABC):
    """One step on the full cost per minibatch, parameters updated in place.

    What the training loop and an optimizer agree on:
    - `decay` (c >= 0) is the optimizer's: it adds the penalty's gradient 2 c W to the step of the weights
      W1 and W2 (never the biases), and the loop reads it to report the cost c (||W1||^2 + ||W2||^2).
    - `grad_scale` is the factor the backward pass multiplies the cross-entropy gradient by before `step`
      sees it (`Workspace.data_cost_grad(..., grad_scale)`): 1 for an optimizer that needs the gradient
      itself; plain SGD asks for its learning rate, so it receives lr * g without a pass over every weight.
    - `step(params, grads)` gets `grads` = grad_scale x the gradient of the batch's mean cross-entropy
      (the decay term left out). They are the loop's workspace buffers, refilled by the next backward
      pass: the optimizer may overwrite them (Momentum and Adam add the decay term into them) but must not
      keep them from one step to the next.
    """

    CHECKS: ClassVar[dict[str, Check]] = {}  # knob -> its check, for the config's values
    lr: float  # the step size of the steps to come
    config_lr: float  # the config's learning rate, which a schedule scales (`scale_lr`)
    decay: float
    grad_scale: float = 1.0

    @abstractmethod
    def step(self, params: Params, grads: Params) -> None:
        """Update `params` in place by one step; `grads` as the class docstring says (may be overwritten)."""

    def scale_lr(self, factor: float) -> None:
        """Take the config's learning rate times `factor` from the next step on (a schedule's, each epoch)."""
        self.lr = self.config_lr * factor

    def state(self) -> Params:
        """What the optimizer carries from step to step (moments, step counts), by name: with the
        parameters, what a checkpoint needs for the next step to be the one an unbroken run takes."""
        return {}

    def load_state(self, state: Params) -> None:
        """Take up `state` (from `state()` of an optimizer of the same kind and shapes), in place."""
        for name, value in self.state().items():
            np.copyto(value, state[name])

    def bind_state(self, state: Params) -> None:
        """Carry `state` (by `state()`'s names and shapes) in its own arrays, not a copy: each step updates
        them in place (a NumPy pack steps each config's slice of its stacked state this way)."""
        del state  # nothing carried from step to step


def momentum_step(value: Any, grad: Any, velocity: Any, minus_lr: Any, momentum: Any, nesterov: bool) -> None:
    """One heavy-ball (or Nesterov) update in place, its decay already in `grad`: the rule `Momentum` applies
    with scalars and a pack (src/nn/packed_optim.py) with one value per config, in the same operations so a
    packed config gets the same bits."""
    grad *= minus_lr  # now the plain gradient step
    velocity *= momentum
    velocity += grad
    if nesterov:
        value += grad
        value += momentum * velocity
    else:
        value += velocity


class SGD(Optimizer):
    """W <- W - lr * (g + 2 decay W), computed as W *= (1 - 2 lr decay); W -= lr g.

    `grad_scale` asks the backward pass for lr * g directly, which saves a pass over every gradient.
    """

    def __init__(self, params: Params, lr: float, decay: float):
        self.lr = self.config_lr = lr
        self.decay = decay
        self.scale_lr(1.0)

    def scale_lr(self, factor: float) -> None:
        super().scale_lr(factor)
        self.shrink = 1 - 2 * self.lr * self.decay
        self.grad_scale = self.lr

    def step(self, params: Params, grads: Params) -> None:
        for name, value in params.items():
            if name in DECAYED and self.decay:
                value *= self.shrink
            value -= grads[name]  # already lr * g


class Momentum(Optimizer):
    """Heavy-ball or Nesterov momentum: v <- mu v - lr g_full; W <- W + v (Nesterov: W + mu v - lr g_full)."""

    CHECKS: ClassVar[dict[str, Check]] = {"momentum": (_unit_interval, "use a value in [0, 1)")}

    def __init__(self, params: Params, lr: float, decay: float, momentum: float = 0.9, nesterov: bool = False):
        self.lr = self.config_lr = lr
        self.decay, self.momentum, self.nesterov = decay, momentum, nesterov
        self.velocity = {name: np.zeros_like(value) for name, value in params.items()}

    def state(self) -> Params:
        return {f"velocity.{name}": value for name, value in self.velocity.items()}

    def bind_state(self, state: Params) -> None:
        self.velocity = {name: state[f"velocity.{name}"] for name in self.velocity}

    def step(self, params: Params, grads: Params) -> None:
        for name, value in params.items():
            grad, velocity = grads[name], self.velocity[name]
            if name in DECAYED and self.decay:
                grad += (2 * self.decay) * value
            momentum_step(value, grad, velocity, -self.lr, self.momentum, self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) on the full cost's gradient, with bias-corrected moment estimates."""

    CHECKS: ClassVar[dict[str, Check]] = {
        "beta1": (_unit_interval, "use a value in [0, 1)"),
        "beta2": (_unit_interval, "use a value in [0, 1)"),
        "eps": (lambda value: value > 0, "use an epsilon > 0, e.g. 1e-8"),
    }

    def __init__(
        self, params: Params, lr: float, decay: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        self.lr = self.config_lr = lr
        self.decay, self.beta1, self.beta2, self.eps = decay, beta1, beta2, eps
        self.mean = {name: np.zeros_like(value) for name, value in params.items()}
        self.var = {name: np.zeros_like(value) for name, value in params.items()}
        self.steps = 0
        self._steps = np.zeros((), dtype=np.float64)  # `steps` as an array, for `state`

    def state(self) -> Params:
        self._steps[...] = self.steps
        moments = {f"mean.{name}": value for name, value in self.mean.items()}
        return {**moments, **{f"var.{name}": value for name, value in self.var.items()}, "steps": self._steps}

    def load_state(self, state: Params) -> None:
        super().load_state(state)
        self.steps = int(state["steps"])

    def bind_state(self, state: Params) -> None:
        self.mean = {name: state[f"mean.{name}"] for name in self.mean}
        self.var = {name: state[f"var.{name}"] for name in self.var}
        self.steps = int(state["steps"])  # a count: the caller reads `steps` back

    def step(self, params: Params, grads: Params) -> None:
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


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
SHARED_ARGUMENTS = ("params", "lr", "decay")  # every optimizer takes these; the rest are its own knobs


def knobs(name: str) -> dict[str, Any]:
    """{knob: type} of optimizer `name`: the keyword arguments its class takes beyond the shared ones."""
    signature = inspect.signature(OPTIMIZERS[name])
    return {key: p.annotation for key, p in signature.parameters.items() if key not in SHARED_ARGUMENTS}


def build_optimizer(name: str, params: Params, *, lr: float, decay: float, **options: float | bool) -> Optimizer:
    """Optimizer `name` for `params`, with its learning rate, the cost's weight decay and its own knobs."""
    factory: Callable[..., Optimizer] = OPTIMIZERS[name]
    return factory(params, lr=lr, decay=decay, **options)
