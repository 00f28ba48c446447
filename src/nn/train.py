"""Minibatch training: `fit` runs the epochs and returns the best parameters and a `History`.

What `fit` takes has a name: the `TrainingData` (train and validation arrays), the `TrainSettings` (batch
size, epochs, when to stop), an `Optimizer` (which owns the weight decay) and the `Callbacks` through
which its caller watches it. No I/O here: whoever calls `fit` watches progress through
`on_epoch_end(epoch, metrics)`, which is how the tracking layer logs each epoch as it ends without
reaching into the loop.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from src.nn.arrays import FloatArray, Labels, Metrics, Params
from src.nn.mlp import Workspace, all_finite, decay_penalty, evaluate
from src.nn.optim import Optimizer
from src.nn.rows import PixelRows
from src.nn.schedule import lr_factor

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_ce", "epoch_time_s")


@dataclass
class History:
    """Per-epoch metrics, one list per name in EPOCH_METRICS, index i = epoch i + 1."""

    metrics: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in EPOCH_METRICS})

    def append(self, row: Metrics) -> None:
        for name in EPOCH_METRICS:
            self.metrics[name].append(row[name])

    @property
    def epochs(self) -> int:
        return len(self.metrics["train_loss"])

    def rows(self) -> list[Metrics]:
        """One dict per epoch, with its 1-based epoch number."""
        return [{"epoch": i + 1, **{name: self.metrics[name][i] for name in EPOCH_METRICS}} for i in range(self.epochs)]


@dataclass(frozen=True)
class TrainingData:
    """What `fit` trains on (pixel rows and labels) and keeps the best parameters by (the validation split).
    Rows are `PixelRows` (as stored, scaled a batch at a time) or an array of floats."""

    X_train: FloatArray | PixelRows
    y_train: Labels
    X_val: FloatArray | PixelRows
    y_val: Labels


@dataclass(frozen=True)
class TrainSettings:
    """The training loop's own hyperparameters (the optimizer holds its learning rate and the decay)."""

    batch_size: int  # images per step; the last step of an epoch may take fewer
    epochs: int  # passes over the training set, at most
    divergence_factor: float = 100.0  # a step's cost above this multiple of the first step's cost diverges
    patience: int | None = None  # epochs without a lower validation loss before stopping; None: never
    schedule: str | None = None  # the learning rate's over the epochs (src/nn/schedule.py); None: constant
    lr_final: float = 0.0  # with a schedule: the factor of the learning rate it anneals toward

    def lr_factor(self, epoch: int) -> float:
        """The factor of each config's learning rate in `epoch`'s steps (1 without a schedule)."""
        return lr_factor(self.schedule, epoch, self.epochs, self.lr_final)

    def out_of_patience(self, epoch: int, best_epoch: int) -> str | None:
        """Why training stops after `epoch` when its best was `best_epoch`, if it runs out of patience."""
        if not self.patience or epoch - best_epoch < self.patience or epoch >= self.epochs:
            return None
        return f"no lower validation loss for {self.patience} epochs (best at epoch {best_epoch})"


EpochEndHook = Callable[[int, Metrics], str | None]  # (epoch, metrics) -> a reason to stop, or None
StepHook = Callable[[int, int], None]  # (epoch, step), called before each step
ProgressHook = Callable[["Progress"], None]  # where training stands, after an epoch it goes on from


@dataclass(frozen=True)
class Callbacks:
    """How the caller watches (and may stop) training: `on_epoch_end` returns a reason to stop (a sweep's
    pruner) or None; `on_step` may pace the machine's threads before each step; `on_progress` sees where
    training stands after every epoch but the last one it trains (a checkpoint: the parameters and the
    optimizer it needs too are the caller's own objects, which `fit` updates in place)."""

    on_epoch_end: EpochEndHook | None = None
    on_step: StepHook | None = None
    on_progress: ProgressHook | None = None


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
    params: Params  # the parameters of the epoch with the lowest validation loss
    best_epoch: int
    history: History
    stopped: str | None = None  # why training ended before its last epoch (None: it ran them all)

    @property
    def epochs_trained(self) -> int:
        return self.history.epochs


@dataclass
class Progress:
    """Where a fit stands after `epochs_done` epochs. With the parameters and the optimizer's `state()`,
    it is everything the next epoch depends on, so a fit started from a saved `Progress` goes on exactly
    as the one that saved it would have (`Progress.start` for a fit from its first epoch)."""

    rng: np.random.Generator  # the shuffling's: each epoch draws its order from it
    history: History = field(default_factory=History)
    best_params: Params = field(default_factory=dict)  # of the epoch with the lowest validation loss so far
    best_epoch: int = 0  # 0: no epoch yet
    best_val_loss: float = float("inf")
    cost_limit: float | None = None  # the divergence limit, set by the first step's cost

    @classmethod
    def start(cls, rng: np.random.Generator) -> "Progress":
        return cls(rng)

    @property
    def epochs_done(self) -> int:
        return self.history.epochs

    def consider(self, epoch: int, val_loss: float, params: Params) -> None:
        """Keep a copy of `params` when `epoch` has the lowest validation loss so far (training goes on)."""
        if self.improves(epoch, val_loss) or not self.best_params:
            self.best_epoch, self.best_val_loss = epoch, val_loss
            self.best_params = {name: value.copy() for name, value in params.items()}

    def improves(self, epoch: int, val_loss: float) -> bool:
        """Whether `epoch` has the lowest validation loss so far; if so it becomes the best epoch, and the
        caller keeps its parameters as `best_params` (a pack keeps them on its device and brings them here
        before a member's `on_progress` and at the end)."""
        if not val_loss < self.best_val_loss:
            return False
        self.best_epoch, self.best_val_loss = epoch, val_loss
        return True


class DivergenceGuard:
    """Stops training when a step's cost is non-finite or above `factor` x the cost before the first step.

    A huge learning rate can also kill every ReLU and leave a finite but absurd cost, hence the bound.
    """

    def __init__(self, factor: float, history: History, limit: float | None = None):
        self.factor, self.history = factor, history
        self.limit = limit  # None until the first step's cost sets it

    def check(self, epoch: int, step: int, cost: float) -> None:
        if self.limit is None:  # the first step's cost is computed before any update
            self.limit = self.factor * cost
        if not cost <= self.limit:  # also catches NaN
            raise Diverged(epoch, step, cost, self.limit, self.history)

    def overflowed(self, epoch: int, step: int) -> Diverged:
        """The divergence of an update that left non-finite parameters after its step's cost was checked."""
        return Diverged(epoch, step, np.nan, np.nan if self.limit is None else self.limit, self.history)


@dataclass(frozen=True)
class _Steps:
    """What every step of a fit uses: the parameters (trained in place), the batch buffers, the optimizer,
    the divergence guard and the caller's per-step hook."""

    params: Params
    workspace: Workspace
    optimizer: Optimizer
    guard: DivergenceGuard
    batch_size: int
    on_step: StepHook | None


def batch_cost(
    params: Params,
    workspace: Workspace,
    optimizer: Optimizer,
    data: tuple[FloatArray | PixelRows, Labels],
    index: NDArray[np.intp],
) -> tuple[float, int]:
    """The cost of the rows `index` of `data` (rows, labels): their mean cross-entropy plus the decay penalty,
    before this step's update, and how many of them `params` classify right; their gradient is left in
    `workspace.grads` for `optimizer.step` (fit's step, and a NumPy pack's: src/nn/sliced.py)."""
    X, y = data
    X_batch = workspace.load_batch(X, index)
    mean_ce, correct = workspace.data_cost_grad(params, X_batch, y[index], optimizer.grad_scale)
    return mean_ce + decay_penalty(params, optimizer.decay), correct


def _train_epoch(steps: _Steps, data: TrainingData, order: NDArray[np.intp], epoch: int) -> tuple[float, float]:
    """One pass over the training set in `order`; returns (mean cost, accuracy) over its batches."""
    params, workspace, optimizer, batch_size = steps.params, steps.workspace, steps.optimizer, steps.batch_size
    rows = (data.X_train, data.y_train)
    total_cost, total_correct = 0.0, 0
    for step, start in enumerate(range(0, len(order), batch_size), start=1):
        if steps.on_step is not None:
            steps.on_step(epoch, step)
        index = order[start : start + batch_size]
        cost, correct = batch_cost(params, workspace, optimizer, rows, index)
        steps.guard.check(epoch, step, cost)
        optimizer.step(params, workspace.grads)  # may overwrite workspace.grads (the Optimizer contract)
        total_cost += cost * len(index)
        total_correct += correct
    return total_cost / len(order), total_correct / len(order)


def _validation(params: Params, data: TrainingData, decay: float) -> Metrics:
    """val_loss (the cost), val_acc and val_ce (the cross-entropy alone) of `params`."""
    val_ce, val_acc = evaluate(params, data.X_val, data.y_val, 0.0)
    return {"val_loss": val_ce + decay_penalty(params, decay), "val_acc": val_acc, "val_ce": val_ce}


def fit(
    params: Params,
    data: TrainingData,
    *,
    optimizer: Optimizer,
    settings: TrainSettings,
    progress: Progress,
    callbacks: Callbacks | None = None,
) -> FitResult:
    """Train `params` in place from where `progress` stands (`Progress.start(rng)`: the first epoch); keep
    and return the parameters with the best validation loss.

    Per epoch: `train_loss` (the cost averaged over the epoch's steps, weighted by batch size),
    `train_acc` (over the same steps), `val_loss` (the cost, its penalty from `optimizer.decay`), `val_acc`,
    `val_ce` (the cross-entropy alone, comparable across weight decays) and `epoch_time_s` (the training
    pass only). Training stops early after `settings.patience` epochs without a lower validation loss, or
    when `callbacks.on_epoch_end(epoch, metrics)` returns a reason to stop (a sweep's pruner);
    `callbacks.on_step(epoch, step)` is called before each step. Raises `Diverged` as soon as a step's cost
    is non-finite or above `settings.divergence_factor` times the cost before the first step.
    """
    callbacks = callbacks or Callbacks()
    dtype = params["W1"].dtype
    data = TrainingData(_as_dtype(data.X_train, dtype), data.y_train, _as_dtype(data.X_val, dtype), data.y_val)
    if not progress.best_params:
        progress.consider(0, float("inf"), params)
    guard = DivergenceGuard(settings.divergence_factor, progress.history, progress.cost_limit)
    steps = _Steps(
        params, Workspace(params, settings.batch_size), optimizer, guard, settings.batch_size, callbacks.on_step
    )
    stopped = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(progress.epochs_done + 1, settings.epochs + 1):
            if settings.schedule is not None:
                optimizer.scale_lr(settings.lr_factor(epoch))
            stopped = _epoch(steps, data, progress, epoch, callbacks) or settings.out_of_patience(
                epoch, progress.best_epoch
            )
            if stopped:
                break
            if callbacks.on_progress is not None and epoch < settings.epochs:
                callbacks.on_progress(progress)
    return FitResult(progress.best_params, progress.best_epoch, progress.history, stopped)


def _as_dtype(X: FloatArray | PixelRows, dtype: np.dtype) -> FloatArray | PixelRows:
    """Float rows cast to the net's dtype once (no copy when they have it); pixel rows are scaled (and cast)
    a batch at a time."""
    if isinstance(X, PixelRows):
        return X if X.scale is not None else X.stored.astype(dtype, copy=False)
    return X.astype(dtype, copy=False)


def _epoch(steps: _Steps, data: TrainingData, progress: Progress, epoch: int, callbacks: Callbacks) -> str | None:
    """Train epoch `epoch`, record it in `progress` and tell the caller; returns the caller's reason to stop."""
    order = progress.rng.permutation(len(data.y_train))
    started = time.perf_counter()
    train_loss, train_acc = _train_epoch(steps, data, order, epoch)
    epoch_time = time.perf_counter() - started
    if not all_finite(steps.params):  # the last step's update overflowed
        raise steps.guard.overflowed(epoch, -(-len(order) // steps.batch_size))
    progress.cost_limit = steps.guard.limit
    row = {"train_loss": train_loss, "train_acc": train_acc, **_validation(steps.params, data, steps.optimizer.decay)}
    row["epoch_time_s"] = epoch_time
    progress.history.append(row)
    progress.consider(epoch, row["val_loss"], steps.params)
    return callbacks.on_epoch_end(epoch, row) if callbacks.on_epoch_end is not None else None
