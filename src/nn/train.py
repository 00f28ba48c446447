"""Minibatch training: `fit` runs the epochs and returns the best parameters and a `History`.

No I/O here: whoever calls `fit` watches progress through `on_epoch_end(epoch, metrics)`, which is how
the tracking layer logs each epoch as it ends without reaching into the loop.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from src.nn.mlp import Workspace, all_finite, decay_penalty, evaluate

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_ce", "epoch_time_s")


@dataclass
class History:
    """Per-epoch metrics, one list per name in EPOCH_METRICS, index i = epoch i + 1."""

    metrics: dict = field(default_factory=lambda: {name: [] for name in EPOCH_METRICS})

    def append(self, row: dict) -> None:
        for name in EPOCH_METRICS:
            self.metrics[name].append(row[name])

    @property
    def epochs(self) -> int:
        return len(self.metrics["train_loss"])

    def rows(self) -> list[dict]:
        """One dict per epoch, with its 1-based epoch number."""
        return [{"epoch": i + 1, **{name: self.metrics[name][i] for name in EPOCH_METRICS}} for i in range(self.epochs)]


class Diverged(Exception):
    """The cost became non-finite or exploded; carries where, and the history up to that point."""

    def __init__(self, epoch: int, step: int, cost: float, limit: float, history: History):
        self.epoch, self.step, self.cost, self.limit, self.history = epoch, step, cost, limit, history
        super().__init__(
            f"diverged at epoch {epoch}, step {step}: cost {cost:.4g} "
            + ("is not finite" if not np.isfinite(cost) else f"exceeds the limit {limit:.4g}")
        )


@dataclass
class FitResult:
    params: dict  # the parameters of the epoch with the lowest validation loss
    best_epoch: int
    history: History
    stopped: str | None = None  # why training ended before its last epoch (None: it ran them all)

    @property
    def epochs_trained(self) -> int:
        return self.history.epochs


class _BestSoFar:
    """The parameters of the epoch with the lowest validation loss so far (a copy: training goes on)."""

    def __init__(self, params: dict):
        self.params = {name: value.copy() for name, value in params.items()}
        self.epoch, self.val_loss = 0, np.inf

    def consider(self, epoch: int, val_loss: float, params: dict) -> None:
        if val_loss < self.val_loss:
            self.epoch, self.val_loss = epoch, val_loss
            self.params = {name: value.copy() for name, value in params.items()}


class DivergenceGuard:
    """Stops training when a step's cost is non-finite or above `factor` x the cost before the first step.

    A huge learning rate can also kill every ReLU and leave a finite but absurd cost, hence the bound.
    """

    def __init__(self, factor: float, history: History):
        self.factor, self.history = factor, history
        self.limit = None

    def check(self, epoch: int, step: int, cost: float) -> None:
        if self.limit is None:  # the first step's cost is computed before any update
            self.limit = self.factor * cost
        if not cost <= self.limit:  # also catches NaN
            raise Diverged(epoch, step, cost, self.limit, self.history)


def _train_epoch(params, workspace, optimizer, X, y, batch_size, decay, order, epoch, guard, on_step=None):
    """One pass over the shuffled training set; returns (mean cost, accuracy) over its batches."""
    total_cost, total_correct = 0.0, 0
    for step, start in enumerate(range(0, len(order), batch_size), start=1):
        if on_step is not None:
            on_step(epoch, step)
        index = order[start : start + batch_size]
        X_batch = workspace.load_batch(X, index)
        mean_ce, correct = workspace.data_cost_grad(params, X_batch, y[index], optimizer.grad_scale)
        cost = mean_ce + decay_penalty(params, decay)
        guard.check(epoch, step, cost)
        optimizer.step(params, workspace.grads)
        total_cost += cost * len(index)
        total_correct += correct
    return total_cost / len(order), total_correct / len(order)


def fit(
    params: dict,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    optimizer,
    decay: float,
    batch_size: int,
    epochs: int,
    rng: np.random.Generator,
    divergence_factor: float = 100.0,
    patience: int | None = None,
    on_epoch_end: Callable[[int, dict], str | None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train `params` in place; keep and return the parameters with the best validation loss.

    Per epoch: `train_loss` (the cost averaged over the epoch's steps, weighted by batch size),
    `train_acc` (over the same steps), `val_loss` (the cost), `val_acc`, `val_ce` (the cross-entropy alone,
    comparable across weight decays) and `epoch_time_s` (the training pass only).
    Training stops early after `patience` epochs without a lower validation loss, or when
    `on_epoch_end(epoch, metrics)` returns a reason to stop (a sweep's pruner). `on_step(epoch, step)` is
    called before each step (the caller may pace the machine's threads there). Raises `Diverged` as soon as
    a step's cost is non-finite or above `divergence_factor` times the cost before the first step.
    """
    dtype = params["W1"].dtype
    X_train, X_val = X_train.astype(dtype, copy=False), X_val.astype(dtype, copy=False)
    workspace = Workspace(params, batch_size)
    history, best = History(), _BestSoFar(params)
    guard = DivergenceGuard(divergence_factor, history)
    stopped = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(y_train))
            started = time.perf_counter()
            train_loss, train_acc = _train_epoch(
                params, workspace, optimizer, X_train, y_train, batch_size, decay, order, epoch, guard, on_step
            )
            epoch_time = time.perf_counter() - started
            if not all_finite(params):  # the last step's update overflowed
                raise Diverged(epoch, -(-len(order) // batch_size), np.nan, guard.limit, history)
            val_ce, val_acc = evaluate(params, X_val, y_val, 0.0)
            val_loss = val_ce + decay_penalty(params, decay)
            row = dict(
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                val_ce=val_ce,
                epoch_time_s=epoch_time,
            )
            history.append(row)
            best.consider(epoch, val_loss, params)
            stopped = on_epoch_end(epoch, row) if on_epoch_end is not None else None
            if not stopped and patience and epoch - best.epoch >= patience and epoch < epochs:
                stopped = f"no lower validation loss for {patience} epochs (best at epoch {best.epoch})"
            if stopped:
                break
    return FitResult(best.params, best.epoch, history, stopped)
