"""What happens as each epoch ends: its metrics go to the run (with the curve a sweep's pruner reads), its
line is printed, and in a sweep that prunes, the decision to go on or stop is made."""

import logging

from src.experiment.job import SweepJob
from src.nn.train import History
from src.pruning import best_so_far, decide, mean_curve
from src.tracking import names

log = logging.getLogger("netsweep")
CURVE_DIGITS = 6  # significant digits of the curve a sweep's run publishes for pruners
CURVE_MAX_CHARS = 7500  # MLflow keeps tag values up to 8000 characters: longer curves stop being published


def encode_curve(curve: list) -> str:
    return " ".join(f"{value:.{CURVE_DIGITS}g}" for value in curve)


def decode_curve(text: str) -> list:
    return [float(value) for value in text.split()] if text else []


class SweepPruner:
    """Reads the curves the sweep's runs published (one search of the store) and applies the sweep's rule,
    so a decision reaches this run at its next epoch wherever it runs.

    Peers are the sweep's other configs, one curve each (training is deterministic, so the longest curve
    any attempt published is the best evidence): this config's own earlier attempts are not peers, and a
    seed pruned in an earlier attempt does not stop its siblings now, only one pruned in this attempt does.
    """

    def __init__(self, store, job: SweepJob, key: str, group: str, epochs: int):
        self.store, self.job, self.key, self.group, self.epochs = store, job, key, group, epochs

    def __call__(self, epoch: int, curve: list) -> str | None:
        rule = self.job.prune
        if not rule.min_epochs <= epoch < self.epochs:
            return None
        if not (rule.decides_at(epoch, self.epochs) or self.job.seeded):
            return None  # nothing to decide (asha between rungs), and no other seed whose pruning this one follows
        longest: dict = {}  # config hash -> (evidence, group, curve)
        for run in self.store.runs([self.job.experiment_id], sweep_id=self.job.sweep_id):
            key = run.tags.get(names.CONFIG_HASH) or run.tags.get(names.REUSED_CONFIG_HASH) or run.run_id
            # runs recorded before val_ce published their cost: never below the cross-entropy, it errs
            # towards keeping this config
            text = run.tags.get(names.CURVE) or run.tags.get(names.COST_CURVE)
            if run.run_id == self.job.run_id or key == self.key or not text:
                continue
            group = run.tags.get(names.GROUP_HASH, key) if rule.by_config else key
            if group == self.group and names.PRUNED in run.tags and run.start_time_ms >= self.job.attempt_started_ms:
                return f"pruned with its config ({run.tags[names.PRUNED]})"
            published = decode_curve(text)
            evidence = (len(published), names.CURVE in run.tags)
            if key not in longest or evidence > longest[key][0]:
                longest[key] = (evidence, group, published)
        by_group: dict = {}
        for _, group, published in longest.values():
            by_group.setdefault(group, []).append(published)
        mine = mean_curve([curve, *by_group.pop(self.group, [])]) if rule.by_config else curve
        return decide(rule, epoch, self.epochs, mine, {k: mean_curve(v) for k, v in by_group.items()})


class EpochEnd:
    """The `on_epoch_end` of `fit`: log, print, and return a reason to stop when the sweep prunes this run."""

    def __init__(self, run, epochs: int, pruner: SweepPruner | None = None, publish_curve: bool = False, threads=None):
        """`publish_curve`: a sweep's run tags its curve each epoch, for this sweep's pruner and later ones;
        `threads`: the run's ThreadGovernor, whose choice is logged with each epoch."""
        self.run, self.epochs, self.pruner, self.publish_curve = run, epochs, pruner, publish_curve
        self.threads = threads
        self.history = History()  # the epochs so far, kept should training be interrupted
        self.pruned: str | None = None

    def __call__(self, epoch: int, row: dict) -> str | None:
        self.history.append(row)
        curve = best_so_far(self.history.metrics["val_ce"])
        encoded = encode_curve(curve) if self.publish_curve else ""
        tags = {names.CURVE: encoded} if encoded and len(encoded) <= CURVE_MAX_CHARS else {}
        chosen = {"blas_threads": self.threads.current} if self.threads and self.threads.current else {}
        self.run.log_metrics({**row, **chosen}, step=epoch, tags=tags)
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
