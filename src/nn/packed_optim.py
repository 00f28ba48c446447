"""K optimizers of one kind as one: each config's hyperparameters a vector over the pack's leading axis.

A packed optimizer is built from the configs' own `Optimizer` objects (src/nn/optim.py): it reads their
hyperparameters and their `state()`, updates a pack's parameters as each of them would update its config's
(operation for operation, every constant rounded to the parameters' dtype as NumPy rounds a Python float, so a
slice gets the same bits as an unpacked run), and hands back each config's state by the same names
(`state()`), so a pack member's checkpoint is an unpacked run's. Learning rate, decay, momentum and Adam's
beta1, beta2 and eps may differ between the configs of a pack; Nesterov or not may not.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from src.nn.arrays import Array, PackedParams, Params
from src.nn.backend import Backend
from src.nn.mlp import DECAYED, PARAM_NAMES
from src.nn.optim import OPTIMIZERS, SGD, Adam, Momentum, Optimizer, momentum_step
from src.nn.packed import select, stack


class PackedOptimizer(ABC):
    """Steps on a pack's parameters in place; the pack's loop calls `begin_epoch` with the sizes of the
    epoch's batches, then `step` once per batch.

    `grad_scale` (host, (K,)) is each config's `Optimizer.grad_scale`; `decay` (host, (K,)) its weight decay;
    `lr` (host, (K,)) its step size, its configured rate (`hyper["lr"]`) times the pack's schedule factor.
    `step(params, grads, index)` gets the gradient of each config's mean cross-entropy times its grad_scale
    (the decay term left out), in buffers it may overwrite, as `Optimizer.step` does.
    """

    RULE: ClassVar[type[Optimizer]]
    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("lr", "decay")

    def __init__(self, optimizers: Sequence[Optimizer], params: PackedParams, dtype: np.dtype):
        for optimizer in optimizers:
            if type(optimizer) is not self.RULE:
                raise TypeError(
                    f"{type(self).__name__} packs {self.RULE.__name__} only, not {type(optimizer).__name__}"
                )
        self.backend = Backend.of(params["W1"])
        self.dtype = dtype  # the parameters' (NumPy's name for it: constants are rounded on the host)
        self.hyper = {
            name: np.array([self.hyperparameter(o, name) for o in optimizers]) for name in self.HYPERPARAMETERS
        }
        self.lr_factor = 1.0  # the schedule's, for the epoch (`scale_lr`): one schedule per pack
        stateful = {name for name in optimizers[0].state() if name != "steps"}
        self.moments = {name: stack([o.state()[name] for o in optimizers], self.backend) for name in sorted(stateful)}
        self.constants()

    @staticmethod
    @abstractmethod
    def hyperparameter(optimizer: Optimizer, name: str) -> float:
        """The value of hyperparameter `name` of one config's optimizer (of this class's RULE)."""

    @abstractmethod
    def device_constants(self) -> None:
        """(Re)compute the device vectors the step uses from `hyper`."""

    @abstractmethod
    def step(self, params: PackedParams, grads: PackedParams, index: int) -> None:
        """The `index`-th step of the epoch (0-based) on every config, parameters updated in place."""

    @property
    def grad_scale(self) -> np.ndarray:
        return np.ones(len(self.hyper["lr"]))

    @property
    def lr(self) -> np.ndarray:
        return self.hyper["lr"] * self.lr_factor  # one rounding, as `Optimizer.scale_lr`

    def scale_lr(self, factor: float) -> None:
        """Every config's learning rate times `factor` from the next step on, as `Optimizer.scale_lr`."""
        self.lr_factor = factor
        self.device_constants()

    @property
    def decay(self) -> np.ndarray:
        return self.hyper["decay"]

    def begin_epoch(self, batch_sizes: Sequence[int]) -> None:
        """The epoch about to start takes one step per entry of `batch_sizes` (SGD and momentum need nothing
        per epoch; Adam computes its steps' bias corrections)."""
        del batch_sizes

    def advance(self, steps: int) -> None:
        """Every config took `steps` more steps (Adam counts them; SGD and momentum need nothing)."""
        del steps

    def alone(self, position: int, params: Params) -> Optimizer:
        """The optimizer of the config at `position` alone, as its run builds it, over `params` (views of its
        slice of the pack's parameters) and carrying views of its slice of this pack's state: its steps are
        the unpacked run's, and update the pack in place (NumPy packs only; then `advance`)."""
        rule = {name: float(self.hyper[name][position]) for name in self.HYPERPARAMETERS if name != "steps"}
        optimizer = self.RULE(params, **rule, **self.options())  # type: ignore[call-arg]  # each RULE takes its own
        optimizer.scale_lr(self.lr_factor)
        own = optimizer.state()
        state = {name: np.reshape(self.moments[name][position], np.shape(own[name])) for name in self.moments}
        if "steps" in own:
            state["steps"] = np.asarray(self.hyper["steps"][position])
        optimizer.bind_state(state)
        return optimizer

    def options(self) -> dict[str, bool]:
        """What the configs' optimizers share beyond their hyperparameters (momentum's Nesterov or not)."""
        return {}

    def state(self) -> dict[str, Array]:
        """Every config's optimizer state, by the names its `Optimizer.state()` uses (config axis first)."""
        return dict(self.moments)

    def select(self, keep: np.ndarray) -> None:
        """Keep only the configs at positions `keep` (host indices), in that order."""
        self.hyper = {name: value[keep] for name, value in self.hyper.items()}
        self.moments = select(self.moments, self.backend.asarray(keep))
        self.constants()

    def vector(self, values: np.ndarray) -> Array:
        """Per-config constants (host float64) as a (K, 1, 1) device vector in the parameters' dtype, each
        rounded as NumPy rounds a Python float that meets an array of that dtype."""
        return self.backend.asarray(values.astype(self.dtype).reshape(-1, 1, 1))

    def decays(self) -> bool:
        """Whether any config has a weight decay (none: the decay terms are skipped, as each optimizer skips
        them for a decay of 0; where some configs have one, a 0 decay adds an exact 0)."""
        return self.decaying

    def constants(self) -> None:
        """(Re)compute what the steps use from `hyper` (after the pack changed)."""
        self.decaying = bool(np.any(self.hyper["decay"] != 0))
        self.device_constants()


class PackedSGD(PackedOptimizer):
    """SGD's W *= (1 - 2 lr decay); W -= lr g per config (the backward pass already scaled g by lr)."""

    RULE = SGD

    @staticmethod
    def hyperparameter(optimizer: Optimizer, name: str) -> float:
        assert isinstance(optimizer, SGD)
        return float({"lr": optimizer.config_lr, "decay": optimizer.decay}[name])

    @property
    def grad_scale(self) -> np.ndarray:
        return self.lr

    def device_constants(self) -> None:
        lr, decay = self.lr, self.hyper["decay"]
        self.shrink = self.vector(1 - 2 * lr * decay)  # as SGD.shrink, per config

    def step(self, params: PackedParams, grads: PackedParams, index: int) -> None:
        decays = self.decays()
        for name in PARAM_NAMES:
            value = params[name]
            if name in DECAYED and decays:
                value *= self.shrink
            value -= grads[name]  # already lr * g


class PackedMomentum(PackedOptimizer):
    """Heavy-ball or Nesterov momentum per config, as `Momentum.step`; all configs Nesterov or none."""

    RULE = Momentum
    HYPERPARAMETERS = ("lr", "decay", "momentum")

    def __init__(self, optimizers: Sequence[Optimizer], params: PackedParams, dtype: np.dtype):
        kinds = {isinstance(o, Momentum) and o.nesterov for o in optimizers}
        if len(kinds) > 1:
            raise ValueError("a pack's momentum configs are all Nesterov or none: pack them apart")
        self.nesterov = kinds.pop()
        super().__init__(optimizers, params, dtype)

    def options(self) -> dict[str, bool]:
        return {"nesterov": self.nesterov}

    @staticmethod
    def hyperparameter(optimizer: Optimizer, name: str) -> float:
        assert isinstance(optimizer, Momentum)
        return float({"lr": optimizer.config_lr, "decay": optimizer.decay, "momentum": optimizer.momentum}[name])

    def device_constants(self) -> None:
        self.twice_decay = self.vector(2 * self.hyper["decay"])
        self.minus_lr = self.vector(-self.lr)
        self.momentum = self.vector(self.hyper["momentum"])

    def step(self, params: PackedParams, grads: PackedParams, index: int) -> None:
        decays = self.decays()
        for name in PARAM_NAMES:
            value, grad, velocity = params[name], grads[name], self.moments[f"velocity.{name}"]
            if name in DECAYED and decays:
                grad += self.twice_decay * value
            momentum_step(value, grad, velocity, self.minus_lr, self.momentum, self.nesterov)


class PackedAdam(PackedOptimizer):
    """Adam per config, as `Adam.step`: the bias corrections of each step computed on the host (as Python
    floats, as Adam computes them) for the whole epoch at once, and the update formed in float64 as NumPy
    forms Adam's (its float64 step size meets float32 moments)."""

    RULE = Adam
    HYPERPARAMETERS = ("lr", "decay", "beta1", "beta2", "eps", "steps")  # steps: each config's count so far

    @staticmethod
    def hyperparameter(optimizer: Optimizer, name: str) -> float:
        assert isinstance(optimizer, Adam)
        values = {"lr": optimizer.config_lr, "decay": optimizer.decay, "beta1": optimizer.beta1}
        values |= {"beta2": optimizer.beta2, "eps": optimizer.eps, "steps": optimizer.steps}
        return float(values[name])

    def device_constants(self) -> None:
        beta1, beta2 = self.hyper["beta1"], self.hyper["beta2"]
        self.twice_decay = self.vector(2 * self.hyper["decay"])
        self.beta1, self.rest1 = self.vector(beta1), self.vector(1 - beta1)
        self.beta2, self.rest2 = self.vector(beta2), self.vector(1 - beta2)

    def begin_epoch(self, batch_sizes: Sequence[int]) -> None:
        steps, hyper = len(batch_sizes), self.hyper
        corrections1, corrections2 = np.empty((steps, len(hyper["lr"]))), np.empty((steps, len(hyper["lr"])))
        for k, done in enumerate(hyper["steps"].astype(int)):
            steps_taken = range(done + 1, done + steps + 1)
            corrections1[:, k] = [1 - float(hyper["beta1"][k]) ** t for t in steps_taken]  # Python's pow, as Adam
            corrections2[:, k] = [1 - float(hyper["beta2"][k]) ** t for t in steps_taken]
        root2 = np.sqrt(corrections2)  # correctly rounded, as math.sqrt
        self.step_sizes = self.backend.asarray((self.lr * root2 / corrections1).reshape(steps, -1, 1, 1))
        self.eps_terms = self.backend.asarray((hyper["eps"] * root2).reshape(steps, -1, 1, 1))
        self.advance(steps)

    def advance(self, steps: int) -> None:
        self.hyper["steps"] = self.hyper["steps"] + steps

    def state(self) -> dict[str, Array]:
        return {**self.moments, "steps": self.hyper["steps"]}

    def step(self, params: PackedParams, grads: PackedParams, index: int) -> None:
        xp, decays = self.backend.xp, self.decays()
        step_size, eps_term = self.step_sizes[index, ...], self.eps_terms[index, ...]
        for name in PARAM_NAMES:
            value, grad = params[name], grads[name]
            mean, var = self.moments[f"mean.{name}"], self.moments[f"var.{name}"]
            if name in DECAYED and decays:
                grad += self.twice_decay * value
            mean *= self.beta1
            mean += self.rest1 * grad
            var *= self.beta2
            var += self.rest2 * grad * grad
            # The eps of the bias-corrected form, moved inside the uncorrected denominator (as Adam.step).
            denominator = xp.astype(xp.sqrt(var), xp.float64) + eps_term
            update = step_size * xp.astype(mean, xp.float64) / denominator
            if value.dtype == xp.float64:
                value -= update
            else:  # rounded once, as NumPy rounds the float64 result of value - update into a float32 array
                params[name] = xp.astype(xp.astype(value, xp.float64) - update, value.dtype)


PACKED_OPTIMIZERS: dict[str, type[PackedOptimizer]] = {"sgd": PackedSGD, "momentum": PackedMomentum, "adam": PackedAdam}


def pack_optimizers(optimizers: Sequence[Optimizer], params: PackedParams, dtype: np.dtype) -> PackedOptimizer:
    """The packed form of K configs' optimizers (all of one kind), with their states, for `params` (whose
    dtype is NumPy's `dtype`)."""
    names = {cls: name for name, cls in OPTIMIZERS.items()}
    kinds = sorted({names.get(type(o), type(o).__name__) for o in optimizers})
    if len(kinds) != 1:
        raise ValueError(f"a pack trains configs of one optimizer, not {' and '.join(kinds)}: pack them apart")
    if kinds[0] not in PACKED_OPTIMIZERS:
        raise ValueError(f"optimizer {kinds[0]!r} has no packed form; train its configs unpacked (pack=1)")
    return PACKED_OPTIMIZERS[kinds[0]](optimizers, params, dtype)
