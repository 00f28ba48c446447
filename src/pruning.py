"""Pruning rules for a sweep: which configs stop early because others are doing better. Pure functions on
curves of the best validation cross-entropy so far (lower is better; without the decay penalty, so configs
with different decays compare fairly); no I/O (the caller reads the curves).

- median: stop a config whose best validation cross-entropy so far is worse than the median of the other configs'
  at the same epoch (the median stopping rule of Google Vizier, Golovin et al. 2017; Optuna's MedianPruner).
- asha: asynchronous successive halving (Li et al. 2018; Optuna's SuccessiveHalvingPruner): at the rungs
  min_epochs x factor^k, a config goes on only if it is in the top 1/factor of the configs that reached
  that rung so far (while fewer than `factor` have, only the best goes on).
- sha: synchronous successive halving (Jamieson & Talwalkar 2016; Karnin et al. 2013): the same rungs, but
  every config pauses at a rung (from its checkpoint) until all of them have reached it, and the rung is
  decided once for all (`halve`): the top 1/factor go on. Nothing is decided while configs train; the first
  configs to arrive cannot run on before the others are compared with them, as they can under asha.

No config is pruned before `min_epochs`. With seeds, a config's curve is the mean over its seeds.

`prune_among` is the whole decision for one config at one epoch, given its peers' curves as plain records
(`Peer`): the sweep's pruner (src/experiment/epochs.py) only reads them from the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

MIN_PEERS = 2  # the median rule waits until at least this many other configs reached the epoch
MAXIMISED = ("val_acc",)  # per-epoch scores where higher is better: their curves hold the score negated
CURVE_METRICS = {"best_val_ce": "val_ce", "best_val_loss": "val_loss", "best_val_acc": "val_acc"}


def curve_metric(objective: str) -> str:
    """The per-epoch score pruning follows for a sweep's `objective`: the objective's own where it has one,
    else the validation cross-entropy (a test or in-sample score is not seen while training)."""
    return CURVE_METRICS.get(str(objective), "val_ce")


def curve_values(metric: str, values: list[float]) -> list[float]:
    """A run's per-epoch `metric` as a curve's raw values, lower is better (accuracies negated)."""
    return [-v for v in values] if metric in MAXIMISED else list(values)


class Rule(str, Enum):
    """`hydra.launcher.prune`: which rule stops configs early."""

    none = "none"
    median = "median"
    asha = "asha"
    sha = "sha"


@dataclass(frozen=True)
class PruneRule:
    rule: Rule = Rule.none
    min_epochs: int = 1
    factor: int = 3
    by_config: bool = True  # seeds of a config are judged (and stopped) together, on their mean
    metric: str = "val_ce"  # the per-epoch score its curves follow (the sweep's objective's; `curve_metric`)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "rule", Rule(self.rule))  # frozen: set once, here
        except ValueError:
            known = ", ".join(r.value for r in Rule)
            raise ValueError(f"unknown pruning rule {self.rule!r}; use one of {known}") from None

    @property
    def active(self) -> bool:
        return self.rule != Rule.none

    @property
    def identity(self) -> str:
        """How it prunes, as part of a sweep's identity ('' for not at all)."""
        if not self.active:
            return ""
        by = "config" if self.by_config else "seed"
        scored = f":{self.metric}" if self.metric != "val_ce" else ""
        return f"{self.rule.value}:{self.min_epochs}:{self.factor}:{by}{scored}"

    def plain(self, score: float) -> float:
        """A curve's value as its metric reads (accuracies are kept negated in curves: lower is better)."""
        return -score if self.metric in MAXIMISED else score

    def shown(self, score: float) -> str:
        return f"{self.metric} {self.plain(score):.4g}"

    @property
    def synchronous(self) -> bool:
        """Decided by the sweep for all configs at once at each rung (sha), not by each config as it trains."""
        return self.rule == Rule.sha

    def needs_peers(self, epoch: int, epochs: int, seeded: bool) -> bool:
        """Whether a config after `epoch` of `epochs` needs its peers' curves: the rule decides now, or it
        has other seeds whose pruning it follows (`seeded`)."""
        if self.synchronous:  # the sweep decides, at the rungs, for every seed at once
            return False
        return self.active and self.min_epochs <= epoch < epochs and (seeded or self.decides_at(epoch, epochs))

    def decides_at(self, epoch: int, epochs: int) -> bool:
        """Whether the rule may stop a config after `epoch` of `epochs` (asha: only at its rungs)."""
        return (
            self.active
            and self.min_epochs <= epoch < epochs
            and (self.rule not in (Rule.asha, Rule.sha) or epoch in self.rungs(epochs))
        )

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which asha and sha decide (before the last epoch)."""
        found, rung = [], self.min_epochs
        while rung < epochs:
            found.append(rung)
            rung *= self.factor
        return found


def best_so_far(losses: list[float]) -> list[float]:
    """The running minimum of a validation-loss curve (NaN epochs keep the previous best)."""
    curve, best = [], math.inf
    for value in losses:
        best = min(best, value) if not math.isnan(value) else best
        curve.append(best)
    return curve


def mean_curve(curves: list[list[float]]) -> list[float]:
    """Per epoch, the mean over the curves that reached it (seeds run at different paces)."""
    length = max((len(c) for c in curves), default=0)
    return [sum(c[t] for c in curves if len(c) > t) / sum(len(c) > t for c in curves) for t in range(length)]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def decide(
    rule: PruneRule, epoch: int, epochs: int, mine: list[float], others: Mapping[str, list[float]]
) -> str | None:
    """Why the config with curve `mine` should stop after `epoch`, or None to go on.

    `others` maps each other config to its curve (best validation cross-entropy so far, per epoch)."""
    if not rule.decides_at(epoch, epochs) or len(mine) < epoch:
        return None
    score = mine[epoch - 1]
    peers = [curve[epoch - 1] for curve in others.values() if len(curve) >= epoch]
    if rule.rule == Rule.median:
        if len(peers) < MIN_PEERS:
            return None
        median = _median(peers)
        return (
            (
                f"median rule at epoch {epoch}: best {rule.shown(score)} is worse than the median "
                f"{rule.plain(median):.4g} of {len(peers)} other configs"
            )
            if score > median
            else None
        )
    if rule.rule == Rule.asha:
        competing = sorted(peers + [score])
        keep = max(1, len(competing) // rule.factor)
        cutoff = competing[keep - 1]
        return (
            (
                f"asha rung at epoch {epoch}: best {rule.shown(score)} is not in the top {keep} of "
                f"{len(competing)} configs (cutoff {rule.plain(cutoff):.4g})"
            )
            if score > cutoff
            else None
        )
    return None  # Rule.none decides nothing


@dataclass(frozen=True)
class Peer:
    """One run of the sweep as a pruner sees it: which config it trained, the group it is judged in, its
    curve, and why it was pruned when that happened in this attempt of the sweep (else None)."""

    key: str  # its config (the config hash)
    group: str  # its config without the seed (the group hash)
    curve: list[float]  # best validation cross-entropy so far, per epoch, as published
    pruned: str | None = None


def prune_among(rule: PruneRule, epoch: int, epochs: int, mine: Peer, runs: Iterable[Peer]) -> str | None:
    """Why config `mine` (its curve so far) should stop after `epoch` of `epochs`, given the sweep's `runs`,
    or None to go on.

    Each other config counts once, with the longest curve any of its runs published (training is
    deterministic: the longest is the best evidence); `mine`'s own runs are not peers. Judged by config,
    seeds share a group and one decision per rung: a seed pruned in this attempt stops its siblings, a seed
    arriving at a rung a sibling went on from goes on too (the decision taken for the config), and otherwise
    the group's curve is the mean of its seeds' curves."""
    longest: dict[str, Peer] = {}
    decided = False  # a sibling seed trained past this epoch: its config went on from here
    for run in runs:
        if run.key == mine.key:
            continue
        group = run.group if rule.by_config else run.key
        if group == mine.group and run.pruned:
            return f"pruned with its config ({run.pruned})"
        decided = decided or (group == mine.group and len(run.curve) > epoch)
        if run.key not in longest or len(run.curve) > len(longest[run.key].curve):
            longest[run.key] = Peer(run.key, group, run.curve)
    if decided:
        return None
    by_group: dict[str, list[list[float]]] = {}
    for peer in longest.values():
        by_group.setdefault(peer.group, []).append(peer.curve)
    seeds = by_group.pop(mine.group, [])
    curve = mean_curve([mine.curve, *seeds]) if rule.by_config else mine.curve
    return decide(rule, epoch, epochs, curve, {group: mean_curve(curves) for group, curves in by_group.items()})


def _group_scores(rule: PruneRule, rung: int, runs: Iterable[Peer]) -> dict[str, float]:
    """Each config (or, by config, each group of seeds) that reached `rung`, with its score there: its best
    validation cross-entropy so far (by config: the mean over its seeds that reached the rung). A config
    counts once, with the longest curve any of its runs published."""
    longest: dict[str, Peer] = {}
    for run in runs:
        if run.key not in longest or len(run.curve) > len(longest[run.key].curve):
            longest[run.key] = run
    by_group: dict[str, list[float]] = {}
    for peer in longest.values():
        if len(peer.curve) >= rung:
            by_group.setdefault(peer.group if rule.by_config else peer.key, []).append(peer.curve[rung - 1])
    return {group: sum(scores) / len(scores) for group, scores in by_group.items()}


def halve(rule: PruneRule, rung: int, candidates: Iterable[Peer], others: Iterable[Peer] = ()) -> dict[str, str]:
    """Synchronous successive halving at `rung`: {key: why it stops} for those of `candidates` (the configs
    waiting at the rung) that do not go on.

    Every config that reached the rung competes, the candidates and the sweep's `others` (runs of earlier
    attempts or batches); the top max(1, n // factor) of the n competing configs go on, and so does any
    config tied with the last of them. By config, seeds share one score and one decision."""
    waiting = list(candidates)
    scores = _group_scores(rule, rung, [*waiting, *others])
    if not scores:
        return {}
    ranked = sorted(scores.values())
    keep = max(1, len(ranked) // rule.factor)
    cutoff = ranked[keep - 1]
    verdicts = {}
    for peer in waiting:
        score = scores.get(peer.group if rule.by_config else peer.key)
        if score is not None and score > cutoff:
            verdicts[peer.key] = (
                f"sha rung at epoch {rung}: best {rule.shown(score)} is not in the top {keep} of "
                f"{len(ranked)} configs (cutoff {rule.plain(cutoff):.4g})"
            )
    return verdicts
