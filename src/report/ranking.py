"""The one ranking of a sweep's configs, used by the progress line, the console summary, the leaderboard,
the figures and the winner recorded on the parent run.

Configs are ranked by the sweep's objective (the config key `objective`, what the sweeper is given), in its
direction: accuracies are maximised, losses (and anything else) minimised. A config's score is the mean over
its seeds; ties are broken by a second metric (the validation accuracy for a loss objective, the validation
cross-entropy for an accuracy one), and what is still equal is a tie, shown as one. Configs without a result
(diverged, error, killed, not yet done) rank last.

With seeds, each config is compared with the winner by a paired t-test over the seeds both trained: a seed
fixes the validation split, the initial weights and the shuffling for every config alike, so the luck of a
split is shared and the paired difference removes it (on digits it halves the spread of a difference). A
config the test cannot tell from the winner (p >= 0.05) is shown as tied with it, with the number of seeds
that would separate the two if the difference and its spread stayed as measured (80 % power). The test is
not corrected for comparing many configs and the winner is picked for its lead, so if anything too few
configs are called tied. Without seeds there is nothing to test: ranks are single draws.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from scipy.special import stdtr, stdtrit  # Student's t: scipy.stats would cost every sweep ~0.5 s of imports

from src.outcomes import Outcome

SCORED = (Outcome.FINISHED, Outcome.PRUNED)  # outcomes whose final metrics count
TIE_TOLERANCE = 1e-9
ALPHA = 0.05  # a config is told apart from the winner when the paired test's p-value is below this
POWER = 0.8  # ... and seeds_needed is how many seeds give a test of this power at the measured difference
MAX_SEEDS = 1000  # seeds_needed beyond this reads as "more than 1000": no practical number separates them
ACCURACY = "best_val_acc"  # shown beside the objective everywhere
CROSS_ENTROPY = "best_val_ce"
DEFAULT_METRIC = CROSS_ENTROPY  # conf/config.yaml's `objective`; the sweep's own is read from its runs
G = TypeVar("G", bound=Hashable)  # what identifies a config: its swept values, its group hash


@dataclass(frozen=True)
class Objective:
    """A final metric and the direction it is optimised in (accuracies up, everything else down)."""

    metric: str = DEFAULT_METRIC

    @property
    def maximize(self) -> bool:
        return self.metric.endswith("_acc")

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def tie_breaker(self) -> str:
        return CROSS_ENTROPY if self.maximize else ACCURACY

    def describe(self) -> str:
        """'best_val_ce (lower is better)'."""
        return f"{self.metric} ({'higher' if self.maximize else 'lower'} is better)"

    def cost(self, value: float) -> float:
        """The value turned so that lower is better (what sorting uses)."""
        return -value if self.maximize else value


def tie_cost(objective: Objective, value: float) -> float:
    """The tie-breaker's value turned so that lower is better (accuracy up, cross-entropy down)."""
    return Objective(objective.tie_breaker).cost(value)


@dataclass
class Entry(Generic[G]):
    """One run as the ranking sees it."""

    group: G  # runs of one config over seeds share it
    outcome: Outcome
    best_val_acc: float = math.nan
    best_val_ce: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)  # any other final metric (another objective)
    replicate: str | None = None  # the seed: runs of two configs with the same one are paired

    def value(self, metric: str) -> float:
        if metric == ACCURACY:
            return self.best_val_acc
        if metric == CROSS_ENTROPY:
            return self.best_val_ce
        return float(self.metrics.get(metric, math.nan))


@dataclass
class Comparison:
    """A config against the winner, over the seeds both have a result on."""

    paired: int  # seeds compared
    difference: float  # mean over those seeds of (this config - the winner) in the objective
    p_value: float  # two-sided paired t-test; NaN with fewer than two paired seeds
    seeds_needed: int | None  # seeds that would separate them (see the module docstring); None: identical

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_value)

    @property
    def distinct(self) -> bool:
        return self.tested and self.p_value < ALPHA


@dataclass
class Score(Generic[G]):
    group: G
    value: float  # mean of the objective over the scored seeds (NaN: none yet)
    value_std: float
    acc: float  # mean best validation accuracy over the same seeds
    acc_std: float
    tie: float  # mean of the tie-breaker over the same seeds (inf: none)
    scored: int  # seeds with a score
    seeds: int  # seeds known so far
    outcomes: list = field(default_factory=list)
    by_replicate: dict = field(default_factory=dict)  # seed -> its objective value (paired comparisons)
    rank: int = 0
    tied: bool = False  # equal to another config in the objective and the tie-breaker
    versus: Comparison | None = None  # against the winner (the winner and single-seed sweeps: None)

    @property
    def has_score(self) -> bool:
        return not math.isnan(self.value)

    @property
    def with_winner(self) -> bool:
        """Ranked first, or tested against the winner and not told apart from it."""
        if self.rank == 1 and self.has_score:
            return True
        return self.versus is not None and self.versus.tested and not self.versus.distinct

    def seeds_text(self, expected: int | None = None) -> str:
        """'2 of 3 seeds done' while replicates are missing, '' for a single seed."""
        total = max(expected or 0, self.seeds)
        return f"{self.scored} of {total} seeds done" if total > 1 and self.scored < total else ""


def _mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.pstdev(values)) if values else (math.nan, math.nan)


def _score(group: G, entries: list[Entry[G]], objective: Objective) -> Score[G]:
    scored = [e for e in entries if e.outcome in SCORED and not math.isnan(e.value(objective.metric))]
    value, value_std = _mean_std([e.value(objective.metric) for e in scored])
    acc, acc_std = _mean_std([a for a in (e.value(ACCURACY) for e in scored) if not math.isnan(a)])
    ties = [t for t in (e.value(objective.tie_breaker) for e in scored) if not math.isnan(t)]
    return Score(
        group=group,
        value=value,
        value_std=value_std,
        acc=acc,
        acc_std=acc_std,
        tie=statistics.fmean(ties) if ties else math.inf,
        scored=len(scored),
        seeds=len(entries),
        outcomes=sorted({e.outcome.value for e in entries}),
        by_replicate={e.replicate: e.value(objective.metric) for e in scored if e.replicate is not None},
    )


def _sort_key(score: Score[G], objective: Objective) -> tuple[int, float, float]:
    if not score.has_score:
        return (1, 0.0, 0.0)
    tie = tie_cost(objective, score.tie) if math.isfinite(score.tie) else math.inf
    return (0, objective.cost(score.value), tie)


def _equal(a: Score[G], b: Score[G]) -> bool:
    return (
        a.has_score
        and b.has_score
        and abs(a.value - b.value) <= TIE_TOLERANCE
        and (abs(a.tie - b.tie) <= TIE_TOLERANCE or a.tie == b.tie)
    )


def seeds_needed(difference: float, spread: float) -> int | None:
    """The fewest seeds at which a paired t-test (two-sided, ALPHA) has POWER to find `difference` when the
    paired differences have standard deviation `spread`; None when there is no difference to find, and
    MAX_SEEDS + 1 when even MAX_SEEDS would not do."""
    if abs(difference) <= TIE_TOLERANCE:
        return None
    if spread <= TIE_TOLERANCE:
        return 2
    n = np.arange(2, MAX_SEEDS + 1)
    needed = (stdtrit(n - 1, 1 - ALPHA / 2) + stdtrit(n - 1, POWER)) * spread / np.sqrt(n)
    enough = np.flatnonzero(needed <= abs(difference))
    return int(n[enough[0]]) if enough.size else MAX_SEEDS + 1


def compare(score: Score[G], winner: Score[G]) -> Comparison:
    """`score` against `winner` over the seeds both have a result on (see the module docstring)."""
    common = sorted(set(score.by_replicate) & set(winner.by_replicate))
    differences = np.array([score.by_replicate[s] - winner.by_replicate[s] for s in common], dtype=float)
    if len(common) < 2:
        mean = float(differences.mean()) if len(common) else math.nan
        return Comparison(len(common), mean, math.nan, None)
    mean, spread = float(differences.mean()), float(differences.std(ddof=1))
    if spread <= TIE_TOLERANCE:  # the same difference on every seed: told apart unless it is none
        p_value = 1.0 if abs(mean) <= TIE_TOLERANCE else 0.0
    else:
        p_value = float(2 * stdtr(len(common) - 1, -abs(mean) / (spread / math.sqrt(len(common)))))
    return Comparison(len(common), mean, p_value, seeds_needed(mean, spread))


def rank(entries: Iterable[Entry[G]], objective: Objective | None = None) -> list[Score[G]]:
    """Scores best first by `objective` (default: DEFAULT_METRIC), each with its rank; configs equal in the
    objective and the tie-breaker share a rank (`tied`); with seeds, each is compared with the winner."""
    objective = objective or Objective()
    by_group: dict[G, list[Entry[G]]] = {}
    for entry in entries:
        by_group.setdefault(entry.group, []).append(entry)
    scores = sorted(
        (_score(group, members, objective) for group, members in by_group.items()),
        key=lambda score: _sort_key(score, objective),
    )
    for position, score in enumerate(scores):
        previous = scores[position - 1] if position else None
        if previous is not None and _equal(previous, score):
            score.rank, score.tied, previous.tied = previous.rank, True, True
        else:
            score.rank = position + 1
    if scores and scores[0].has_score and len(scores[0].by_replicate) > 1:
        for score in scores[1:]:
            if score.has_score:
                score.versus = compare(score, scores[0])
    return scores


def winners(scores: list[Score[G]]) -> list[Score[G]]:
    """The configs ranked first (more than one when they tie exactly); [] when nothing has a score."""
    return [s for s in scores if s.rank == 1 and s.has_score]


def contenders(scores: list[Score[G]]) -> list[Score[G]]:
    """The configs that cannot be told from the winner: those ranked first and those the paired test over
    seeds does not separate from it."""
    return [s for s in scores if s.with_winner]
