"""What happens as each epoch ends: its metrics go to the run (with the curve a sweep's pruner reads), its
line is printed, and in a sweep that prunes, the decision to go on or stop is made.

An epoch's metrics are written with the first epoch to end LOG_EVERY_S or more after the last write, in one
write with those of the epochs that ended meanwhile: a run of short epochs (digits: a few ms each) costs a
few writes, not one per epoch, and one of long epochs writes each as it ends. They are written at once where
a pruner compares curves (its rungs) and when the fit ends, however it ends (`EpochEnd.flush`, which the
runner calls first). A process killed with SIGKILL loses only the epochs not yet written, which its
checkpoint holds: the attempt that continues from it writes them first."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from src.experiment.job import SweepJob
from src.experiment.threads import ThreadGovernor
from src.nn.arrays import Metrics
from src.nn.train import History
from src.pruning import Peer, best_so_far, curve_values, prune_among
from src.tracking import names
from src.tracking.api import RunLog, StepMetrics, Store

log = logging.getLogger("netsweep")
LOG_EVERY_S = 1.0  # epochs' metrics are written at most this often (and at once at rungs and at the end)
CURVE_DIGITS = 6  # significant digits of the curve a sweep's run publishes for pruners
CURVE_MAX_CHARS = 7500  # MLflow keeps tag values up to 8000 characters: longer curves stop being published


def encode_curve(curve: list[float]) -> str:
    return " ".join(f"{value:.{CURVE_DIGITS}g}" for value in curve)


def decode_curve(text: str) -> list[float]:
    return [float(value) for value in text.split()] if text else []


class SweepPruner:
    """Reads the curves the sweep's runs published (one search of the store) and applies the sweep's rule
    to them (`src.pruning.prune_among`), so a decision reaches this run at its next epoch wherever it runs.
    A run created before this attempt of the sweep started counts for its curve, not for being pruned."""

    def __init__(self, store: Store, job: SweepJob, key: str, group: str, epochs: int):
        self.store, self.job, self.key, self.group, self.epochs = store, job, key, group, epochs

    def compares_at(self, epoch: int) -> bool:
        """Whether this run's curve is compared with its peers' after `epoch` (so it is written now)."""
        return self.job.prune.needs_peers(epoch, self.epochs, self.job.seeded)

    def __call__(self, epoch: int, curve: list[float]) -> str | None:
        if not self.compares_at(epoch):
            return None  # nothing to decide (asha between rungs), and no other seed whose pruning this one follows
        mine = Peer(self.key, self.group, curve)
        return prune_among(self.job.prune, epoch, self.epochs, mine, self._peers())

    def _peers(self) -> list[Peer]:
        """The sweep's other runs that published a curve, as plain records."""
        peers = []
        for run in self.store.runs([self.job.experiment_id], sweep_id=self.job.sweep_id):
            text = run.tags.get(names.CURVE)
            if run.run_id == self.job.run_id or not text:
                continue
            key = run.tags.get(names.CONFIG_HASH) or run.tags.get(names.REUSED_CONFIG_HASH) or run.run_id
            in_this_attempt = run.start_time_ms >= self.job.attempt_started_ms
            pruned = run.tags.get(names.PRUNED) if in_this_attempt else None
            peers.append(Peer(key, run.tags.get(names.GROUP_HASH, key), decode_curve(text), pruned))
        return peers


@dataclass
class EpochEnd:
    """The `on_epoch_end` of `fit`: log, print, and return a reason to stop when the sweep prunes this run.

    `history` is the fit's own (its `Progress.history`, which `fit` appends each epoch to before calling
    this), so an interrupted run keeps every epoch trained, those of an earlier attempt included.
    `publish_curve`: a sweep's run tags its curve each epoch, for this sweep's pruner and later ones;
    `threads`: the run's ThreadGovernor, whose choice is logged with each epoch; `logged`: epochs the run
    already holds (an attempt continued from a checkpoint retrains, but does not log again, the epochs an
    earlier attempt logged after its last checkpoint). Metrics wait in `pending` until `flush` (see above)."""

    run: RunLog
    epochs: int
    history: History
    pruner: SweepPruner | None = None
    publish_curve: bool = False
    threads: ThreadGovernor | None = None
    logged: int = 0
    pruned: str | None = field(default=None, init=False)
    clock: Callable[[], float] = time.monotonic  # when LOG_EVERY_S has passed (a test's own clock)
    pending: list[StepMetrics] = field(default_factory=list, init=False)
    pending_tags: dict[str, object] = field(default_factory=dict, init=False)
    flushed_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.flushed_at = self.clock()

    def flush(self) -> None:
        """Write the epochs that wait (and the latest curve), in as few writes as the store takes. They stop
        waiting first: a write that fails is not tried again (the history and Figure 1 still hold them)."""
        pending, tags = self.pending, self.pending_tags
        self.pending, self.pending_tags, self.flushed_at = [], {}, self.clock()
        if pending or tags:
            self.run.log_steps(pending, tags=tags)

    def __call__(self, epoch: int, row: Metrics) -> str | None:
        metric = self.pruner.job.prune.metric if self.pruner is not None else "val_ce"
        curve = best_so_far(curve_values(metric, self.history.metrics[metric][:epoch]))
        encoded = encode_curve(curve) if self.publish_curve else ""
        tags = {names.CURVE: encoded} if encoded and len(encoded) <= CURVE_MAX_CHARS else {}
        chosen = {"blas_threads": self.threads.current} if self.threads and self.threads.current else {}
        if epoch > self.logged:
            self.pending.append(StepMetrics(epoch, {**row, **chosen}, int(time.time() * 1000)))
            self.pending_tags.update(tags)
        compared = self.pruner is not None and self.pruner.compares_at(epoch)
        if compared or epoch >= self.epochs or self.clock() - self.flushed_at >= LOG_EVERY_S:
            self.flush()
        width = len(str(self.epochs))
        log.info(
            f"epoch {epoch:>{width}}/{self.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
            f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  {row['epoch_time_s']:.3g}s"
        )
        if self.pruner is not None:
            self.pruned = self.pruner(epoch, curve)
            if self.pruned:
                self.run.set_tags({names.PRUNED: self.pruned})
        return self.pruned
