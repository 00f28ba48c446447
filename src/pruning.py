"""Pruning rules for a sweep: which configs stop early because others are doing better. Pure functions on
curves of the best validation cross-entropy so far (lower is better; without the decay penalty, so configs
with different decays compare fairly); no I/O (the caller reads the curves).

- median: stop a config whose best validation cross-entropy so far is worse than the median of the other configs'
  at the same epoch (the median stopping rule of Google Vizier, Golovin et al. 2017; Optuna's MedianPruner).
- asha: asynchronous successive halving (Li et al. 2018; Optuna's SuccessiveHalvingPruner): at the rungs
  min_epochs x factor^k, a config goes on only if it is in the top 1/factor of the configs that reached
  that rung so far (while fewer than `factor` have, only the best goes on).

No config is pruned before `min_epochs`. With seeds, a config's curve is the mean over its seeds.
"""

import math
from dataclasses import dataclass

RULES = ("none", "median", "asha")
MIN_PEERS = 2  # the median rule waits until at least this many other configs reached the epoch


@dataclass(frozen=True)
class PruneRule:
    rule: str = "none"
    min_epochs: int = 1
    factor: int = 3
    by_config: bool = True  # seeds of a config are judged (and stopped) together, on their mean

    @property
    def active(self) -> bool:
        return self.rule != "none"

    def decides_at(self, epoch: int, epochs: int) -> bool:
        """Whether the rule may stop a config after `epoch` of `epochs` (asha: only at its rungs)."""
        return (
            self.active and self.min_epochs <= epoch < epochs and (self.rule != "asha" or epoch in self.rungs(epochs))
        )

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which asha decides (before the last epoch)."""
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


def decide(rule: PruneRule, epoch: int, epochs: int, mine: list[float], others: dict) -> str | None:
    """Why the config with curve `mine` should stop after `epoch`, or None to go on.

    `others` maps each other config to its curve (best validation cross-entropy so far, per epoch)."""
    if not rule.decides_at(epoch, epochs) or len(mine) < epoch:
        return None
    score = mine[epoch - 1]
    peers = [curve[epoch - 1] for curve in others.values() if len(curve) >= epoch]
    if rule.rule == "median":
        if len(peers) < MIN_PEERS:
            return None
        median = _median(peers)
        return (
            (
                f"median rule at epoch {epoch}: best val_ce {score:.4g} is worse than the median {median:.4g} "
                f"of {len(peers)} other configs"
            )
            if score > median
            else None
        )
    if rule.rule == "asha":
        competing = sorted(peers + [score])
        keep = max(1, len(competing) // rule.factor)
        cutoff = competing[keep - 1]
        return (
            (
                f"asha rung at epoch {epoch}: best val_ce {score:.4g} is not in the top {keep} of "
                f"{len(competing)} configs (cutoff {cutoff:.4g})"
            )
            if score > cutoff
            else None
        )
    raise ValueError(f"unknown pruning rule {rule.rule!r}; use one of {', '.join(RULES)}")
