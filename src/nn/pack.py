"""Training K configs of one net as one computation: `fit_pack` is `fit` (src/nn/train.py) for a pack.

Each config of a pack is a `Member`: what `fit` takes for it alone (its parameters, its optimizer, where it
stands and its callbacks), so the caller builds members exactly as it builds unpacked fits, and each member
comes back as what `fit` gives: a `FitResult`, or the `Diverged` that `fit` would have raised. Per member:
- its own initial weights and shuffling (its `Progress.rng` draws its order every epoch, as `fit` draws it);
- its own hyperparameters (learning rate, decay, momentum, Adam's beta1/beta2/eps): vectors over the pack;
- its own end: divergence, patience or a stop reason from its `on_epoch_end` ends its slice only, and an
  ended slice leaves the pack (the arrays are compacted), so the others go on faster;
- its own checkpoints: before its `on_progress`, its parameters, its optimizer's state and its
  `progress.best_params` are brought up to date in the caller's own objects, so `checkpoints.snapshot` of a
  member is that of an unpacked run, and a member can be resumed alone or in another pack.

Members of one pack share the data, the net's shape and dtype, `TrainSettings` (its learning-rate schedule
included: each epoch scales every member's own rate by the same factor) and the optimizer's kind (and
Nesterov or not), and stand at the same epoch (`progress.epochs_done`): a pack does not train members that
are at different epochs (resume them in packs of their own, or alone).

On NumPy a member gets the same bits as `fit` gives it alone (the packed numerics repeat `fit`'s operations
per slice); on another backend, the same up to float32 rounding (its BLAS sums in another order). A NumPy
pack of a net of `sliced.SLICED_FROM_WEIGHTS` weights or more (Fashion-MNIST's, not digits') trains one
config's epoch after another through `fit`'s own steps on views of its slice (src/nn/sliced.py), which keeps
one config's weights in the cache; the epoch's bookkeeping stays the pack's.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from src.nn import sliced
from src.nn.arrays import Array, Metrics, Params
from src.nn.backend import NUMPY, Backend, namespace, to_numpy
from src.nn.optim import Optimizer
from src.nn.packed import Batch, all_finite, data_cost_grad, evaluate, penalties, select, squared_norms, stack_params
from src.nn.packed_optim import PackedOptimizer, pack_optimizers
from src.nn.rows import PixelRows, take_rows
from src.nn.train import Callbacks, Diverged, FitResult, Progress, StepHook, TrainingData, TrainSettings


@dataclass
class Member:
    """One config of a pack: its parameters (updated in place, as `fit` updates them, whenever the pack
    brings them back: before `on_progress` and at the end), its optimizer (its state likewise), where it
    stands (`Progress.start(rng)` or a checkpoint's) and how its caller watches it (its `on_epoch_end` and
    `on_progress`; `on_step` is the pack's, given to `fit_pack`, and a member may not have one)."""

    params: Params
    optimizer: Optimizer
    progress: Progress
    callbacks: Callbacks = field(default_factory=Callbacks)


PackOutcome = FitResult | Diverged  # what `fit` returns for a config, or the exception it raises


@dataclass(frozen=True)
class _Data:
    """The training data on the pack's device, moved there once: rows (integer pixel rows as stored, scaled a
    batch at a time), labels and one-hot rows."""

    X_train: "Array | PixelRows"
    y_train: Array
    targets: Array
    X_val: "Array | PixelRows"
    y_val: Array

    @classmethod
    def move(cls, data: TrainingData, backend: Backend, dtype: np.dtype, num_classes: int) -> "_Data":
        """NumPy arrays are cast to the net's dtype and moved; arrays already of the backend's library stay
        as they are (their rows must have the net's dtype)."""
        labels = to_numpy(data.y_train).astype(np.int64)  # a column: a batch's labels gather as (K, n, 1)
        targets = np.zeros((len(labels), num_classes), dtype=dtype)
        targets[np.arange(len(labels)), labels] = 1

        def rows(X: "Array | PixelRows") -> "Array | PixelRows":
            if isinstance(X, PixelRows) and X.scale is not None:
                return X.to(backend.asarray)
            X = X.stored if isinstance(X, PixelRows) else X
            return backend.asarray(np.asarray(X, dtype=dtype) if isinstance(X, np.ndarray) else X)

        return cls(
            rows(data.X_train),
            backend.asarray(labels.reshape(-1, 1)),
            backend.asarray(targets),
            rows(data.X_val),
            backend.asarray(to_numpy(data.y_val).astype(np.int64)),
        )

    def batch(self, index: Array) -> Batch:
        """Each config's rows at its `index` ((K, n) on the device)."""
        xp = namespace(index)
        (K, n), d = index.shape, self.X_train.shape[1]
        flat = xp.reshape(index, (-1,))
        return Batch(
            xp.reshape(take_rows(self.X_train, flat, self.targets.dtype), (K, n, d)),
            xp.reshape(xp.take(self.y_train, flat, axis=0), (K, n, 1)),
            xp.reshape(xp.take(self.targets, flat, axis=0), (K, n, self.targets.shape[1])),
        )


class _Pack:
    """The members still training, and their stacked state on the device (`alive[i]` is slice i)."""

    def __init__(self, members: Sequence[Member], backend: Backend):
        self.members, self.backend = members, backend
        self.alive = list(range(len(members)))
        self.shapes = {name: value.shape for name, value in members[0].params.items()}
        self.dtype = members[0].params["W1"].dtype
        self.params = stack_params([m.params for m in members], backend)
        self.best = stack_params([m.progress.best_params for m in members], backend)
        self.optimizer: PackedOptimizer = pack_optimizers([m.optimizer for m in members], self.params, self.dtype)
        limits = [np.nan if m.progress.cost_limit is None else m.progress.cost_limit for m in members]
        self.limit = np.array(limits, dtype=np.float64)  # each config's divergence limit
        self.unset = np.array([m.progress.cost_limit is None for m in members])  # set by its first step's cost
        self.one_at_a_time = backend.name == "numpy" and sliced.sliced(members[0].params)  # src/nn/sliced.py

    def progress(self, position: int) -> Progress:
        return self.members[self.alive[position]].progress

    def keep(self, positions: Sequence[int]) -> None:
        """Only the slices at `positions` go on (in that order): the arrays shrink to them."""
        if list(positions) == list(range(len(self.alive))):
            return
        keep = np.asarray(positions, dtype=np.int64)
        if len(keep):
            on_device = self.backend.asarray(keep)
            self.params, self.best = select(self.params, on_device), select(self.best, on_device)
            self.optimizer.select(keep)
        self.limit, self.unset = self.limit[keep], self.unset[keep]
        self.alive = [self.alive[i] for i in positions]

    def bring_back(self, positions: Sequence[int]) -> None:
        """Copy the slices at `positions` into their members' parameters, optimizer and best parameters."""
        if not positions:
            return
        host = {name: to_numpy(value) for name, value in self.params.items()}
        best = {name: to_numpy(value) for name, value in self.best.items()}
        state = {name: to_numpy(value) for name, value in self.optimizer.state().items()}
        for i in positions:
            member = self.members[self.alive[i]]
            for name, value in member.params.items():
                np.copyto(value, host[name][i].reshape(value.shape))
            own = member.optimizer.state()
            member.optimizer.load_state({name: state[name][i].reshape(np.shape(own[name])) for name in own})
            member.progress.best_params = {name: best[name][i].reshape(self.shapes[name]).copy() for name in best}

    def keep_best(self, improved: np.ndarray) -> None:
        """The current parameters become the best of the slices where `improved` (host, (K,) bool)."""
        if improved.any():
            xp, mask = self.backend.xp, self.backend.asarray(improved.reshape(-1, 1, 1))
            self.best = {name: xp.where(mask, self.params[name], self.best[name]) for name in self.best}


def fit_pack(
    data: TrainingData,
    members: Sequence[Member],
    *,
    settings: TrainSettings,
    backend: Backend | None = None,
    on_step: StepHook | None = None,
) -> list[PackOutcome]:
    """Train `members` as one pack from where they stand, on `backend` (unless given: NumPy, or the library
    and device of `data`'s arrays when they are not NumPy's; the data moves to the device once); per member,
    in order, what `fit` gives for it alone: a `FitResult`, or the `Diverged` that `fit` raises (returned).

    The metrics of each epoch are `fit`'s, except `epoch_time_s`: the pack's training pass over the epoch
    divided by the number of configs it trained, each config's share. `on_step(epoch, step)` is called
    before each of the pack's steps (one config at a time: before each step of each config). A member's
    divergence is found at the end of the epoch it diverged in (its slice trains on, alone, to the epoch's end,
    with no effect on the others), and reported with the step and cost `fit` reports. Raises ValueError when
    the members cannot share a pack.
    """
    _check(members)
    for member in members:
        if not member.progress.best_params:
            member.progress.consider(0, float("inf"), member.params)
    if backend is None:  # array type in, array type out: data of another library trains on its device
        rows = data.X_train.stored if isinstance(data.X_train, PixelRows) else data.X_train
        backend = NUMPY if isinstance(rows, np.ndarray) else Backend.of(rows)
    pack = _Pack(members, backend)
    device = _Data.move(data, pack.backend, pack.dtype, members[0].params["W2"].shape[1])
    outcomes: dict[int, PackOutcome] = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(members[0].progress.epochs_done + 1, settings.epochs + 1):
            if settings.schedule is not None:
                pack.optimizer.scale_lr(settings.lr_factor(epoch))
            outcomes |= _epoch(pack, device, settings, epoch, on_step)
            if not pack.alive:
                break
    pack.bring_back(range(len(pack.alive)))
    outcomes |= {index: _result(members[index].progress) for index in pack.alive}
    return [outcomes[index] for index in range(len(members))]


def _check(members: Sequence[Member]) -> None:
    """ValueError unless the members can train as one pack (the optimizers are checked as they are packed)."""
    if not members:
        raise ValueError("a pack needs at least one config")
    nets = {tuple((name, value.shape, value.dtype.str) for name, value in m.params.items()) for m in members}
    if len(nets) > 1:
        raise ValueError("a pack's configs have one net: the same parameter names, shapes and dtype")
    done = sorted({m.progress.epochs_done for m in members})
    if len(done) > 1:
        raise ValueError(f"a pack's configs stand at one epoch, not at epochs {done}: pack them apart")
    if any(m.callbacks.on_step is not None for m in members):
        raise ValueError("a pack takes one step for all its configs: give on_step to fit_pack, not to a member")


def _epoch(
    pack: _Pack, device: _Data, settings: TrainSettings, epoch: int, on_step: StepHook | None
) -> dict[int, PackOutcome]:
    """Train epoch `epoch` on every member still in the pack, record it and tell each member's caller;
    the members that end leave the pack, their outcomes returned by member index."""
    rows_count = device.y_train.shape[0]
    orders = np.stack([pack.progress(i).rng.permutation(rows_count) for i in range(len(pack.alive))])
    started = time.perf_counter()
    costs, correct = _train_epoch(pack, device, pack.backend.asarray(orders), epoch, settings.batch_size, on_step)
    share = (time.perf_counter() - started) / len(pack.alive)
    outcomes: dict[int, PackOutcome] = {}
    diverged = _diverged(pack, costs, epoch, settings.divergence_factor)
    going = [i for i in range(len(pack.alive)) if i not in diverged]
    outcomes |= {pack.alive[i]: stop for i, stop in diverged.items()}
    pack.keep(going)
    if not pack.alive:
        return outcomes
    rows = _rows(pack, device, costs[:, going], correct[going], settings.batch_size)
    for row in rows:
        row["epoch_time_s"] = share
    _record(pack, epoch, rows)
    stops = _stops(pack, epoch, rows, settings)
    pack.bring_back(sorted(stops))
    outcomes |= {pack.alive[i]: _result(pack.progress(i), reason) for i, reason in stops.items()}
    pack.keep([i for i in range(len(pack.alive)) if i not in stops])
    if epoch < settings.epochs:
        _report_progress(pack)
    return outcomes


def _train_epoch(
    pack: _Pack, device: _Data, orders: Array, epoch: int, batch_size: int, on_step: StepHook | None
) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the training set, each config in its own order (`orders`, (K, N) on the device): every
    step's cost of each config (host, (steps, K)) and how many rows each classified right (host, (K,))."""
    if pack.one_at_a_time:
        data = (device.X_train, device.y_train[:, 0])
        stacked = sliced.Stacked(pack.params, pack.optimizer, pack.shapes)
        return sliced.train_epoch(stacked, data, orders, epoch, batch_size, on_step)
    xp, device_of, optimizer = pack.backend.xp, pack.backend.device, pack.optimizer
    K, N = orders.shape
    sizes = [min(batch_size, N - start) for start in range(0, N, batch_size)]
    optimizer.begin_epoch(sizes)
    scales = {n: optimizer.vector(optimizer.grad_scale / n) for n in set(sizes)}  # as fit's grad_scale / n
    decay = pack.backend.asarray(optimizer.decay) if optimizer.decays() else None
    costs = xp.zeros((len(sizes), K), dtype=xp.float64, device=device_of)
    correct = xp.zeros(K, dtype=xp.int64, device=device_of)
    for step, n in enumerate(sizes):
        if on_step is not None:
            on_step(epoch, step + 1)
        batch = device.batch(orders[:, step * batch_size : step * batch_size + n])
        mean_ce, right, grads = data_cost_grad(pack.params, batch, scales[n])
        costs[step, :] = mean_ce if decay is None else mean_ce + penalties(pack.params, decay)
        correct += right
        optimizer.step(pack.params, grads, step)  # may overwrite grads (the Optimizer contract)
    return to_numpy(costs), to_numpy(correct)


def _diverged(pack: _Pack, costs: np.ndarray, epoch: int, factor: float) -> dict[int, Diverged]:
    """The slices that diverged this epoch (by position), each with the `Diverged` fit raises: at the first
    step whose cost is not finite or above its limit, or at the last step when its update overflowed."""
    pack.limit[pack.unset] = factor * costs[0, pack.unset]  # the first step's cost sets the limit, as in fit
    pack.unset[:] = False
    bad = ~(costs <= pack.limit)  # also catches NaN
    finite = to_numpy(all_finite(pack.params))
    diverged = {}
    for i in range(len(pack.alive)):
        history, limit = pack.progress(i).history, float(pack.limit[i])
        if bad[:, i].any():
            step = int(np.argmax(bad[:, i]))
            diverged[i] = Diverged(epoch, step + 1, float(costs[step, i]), limit, history)
        elif not finite[i]:  # the last step's update overflowed
            diverged[i] = Diverged(epoch, len(costs), np.nan, limit, history)
        else:
            pack.progress(i).cost_limit = limit
    return diverged


def _rows(pack: _Pack, device: _Data, costs: np.ndarray, correct: np.ndarray, batch_size: int) -> list[Metrics]:
    """Each slice's metrics of the epoch (all but epoch_time_s), computed as fit computes them."""
    N = device.y_train.shape[0]
    sizes = np.array([min(batch_size, N - start) for start in range(0, N, batch_size)], dtype=np.float64)
    train_loss = np.add.accumulate(costs * sizes[:, None], axis=0)[-1] / N  # summed in step order, as fit sums
    val_ce, val_acc = evaluate(pack.params, device.X_val, device.y_val)
    norms = to_numpy(squared_norms(pack.params))
    rows = []
    for i, decay in enumerate(pack.optimizer.decay.tolist()):
        penalty = 0.0 if decay == 0 else decay * float(norms[i])  # as mlp.decay_penalty
        row = {"train_loss": float(train_loss[i]), "train_acc": int(correct[i]) / N}
        rows.append(
            row | {"val_loss": float(val_ce[i]) + penalty, "val_acc": float(val_acc[i]), "val_ce": float(val_ce[i])}
        )
    return rows


def _record(pack: _Pack, epoch: int, rows: list[Metrics]) -> None:
    """Each slice's epoch into its history, and its parameters kept where its validation loss is the lowest."""
    improved = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        progress = pack.progress(i)
        progress.history.append(row)
        improved[i] = progress.improves(epoch, row["val_loss"])
    pack.keep_best(improved)


def _stops(pack: _Pack, epoch: int, rows: list[Metrics], settings: TrainSettings) -> dict[int, str]:
    """Why each slice that stops after `epoch` stops (by position): its caller's reason, or its patience."""
    stops = {}
    for i, row in enumerate(rows):
        member = pack.members[pack.alive[i]]
        hook = member.callbacks.on_epoch_end
        reason = hook(epoch, row) if hook is not None else None
        reason = reason or settings.out_of_patience(epoch, member.progress.best_epoch)
        if reason:
            stops[i] = reason
    return stops


def _result(progress: Progress, stopped: str | None = None) -> FitResult:
    return FitResult(progress.best_params, progress.best_epoch, progress.history, stopped)


def _report_progress(pack: _Pack) -> None:
    """Each watching member's `on_progress`, after its parameters, optimizer and best were brought back."""
    watched = [i for i in range(len(pack.alive)) if pack.members[pack.alive[i]].callbacks.on_progress is not None]
    pack.bring_back(watched)
    for i in watched:
        hook = pack.members[pack.alive[i]].callbacks.on_progress
        if hook is not None:
            hook(pack.progress(i))
