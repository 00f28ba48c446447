"""The one ranking of a sweep's configs, used by the progress line, the console summary, the leaderboard,
the heatmap's frame and the winner recorded on the parent run.

A config's score is the mean over its seeds of the best validation accuracy (over epochs, not the last
one); ties are broken by the mean best validation cross-entropy (without the decay penalty, which would
favour the smallest decay), and what is still equal is a tie, shown as one.
Configs without a result (diverged, error, killed, not yet done) rank last.
"""

import math
import statistics
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from src.outcomes import Outcome

SCORED = (Outcome.FINISHED, Outcome.PRUNED)  # outcomes whose best validation accuracy counts
TIE_TOLERANCE = 1e-9
G = TypeVar("G", bound=Hashable)  # what identifies a config: its swept values, its group hash


@dataclass
class Entry(Generic[G]):
    """One run as the ranking sees it."""

    group: G  # runs of one config over seeds share it
    outcome: Outcome
    best_val_acc: float = math.nan
    best_val_ce: float = math.nan  # the tie-breaker: validation cross-entropy, decay penalty left out


@dataclass
class Score(Generic[G]):
    group: G
    acc: float  # mean best validation accuracy over the scored seeds (NaN: none yet)
    acc_std: float
    loss: float  # mean best validation cross-entropy over the same seeds
    scored: int  # seeds with a score
    seeds: int  # seeds known so far
    outcomes: list = field(default_factory=list)
    rank: int = 0
    tied: bool = False  # equal to another config in accuracy and loss

    @property
    def has_score(self) -> bool:
        return not math.isnan(self.acc)

    def seeds_text(self, expected: int | None = None) -> str:
        """'2 of 3 seeds done' while replicates are missing, '' for a single seed."""
        total = max(expected or 0, self.seeds)
        return f"{self.scored} of {total} seeds done" if total > 1 and self.scored < total else ""


def _score(group: G, entries: list[Entry[G]]) -> Score[G]:
    scored = [e for e in entries if e.outcome in SCORED and not math.isnan(e.best_val_acc)]
    accs = [e.best_val_acc for e in scored]
    losses = [e.best_val_ce for e in scored if not math.isnan(e.best_val_ce)]
    return Score(
        group=group,
        acc=statistics.fmean(accs) if accs else math.nan,
        acc_std=statistics.pstdev(accs) if accs else math.nan,
        loss=statistics.fmean(losses) if losses else math.inf,
        scored=len(scored),
        seeds=len(entries),
        outcomes=sorted({e.outcome.value for e in entries}),
    )


def _sort_key(score: Score[G]) -> tuple[int, float, float]:
    return (0, -score.acc, score.loss) if score.has_score else (1, 0.0, 0.0)


def _equal(a: Score[G], b: Score[G]) -> bool:
    return (
        a.has_score
        and b.has_score
        and abs(a.acc - b.acc) <= TIE_TOLERANCE
        and (abs(a.loss - b.loss) <= TIE_TOLERANCE or a.loss == b.loss)
    )


def rank(entries: Iterable[Entry[G]]) -> list[Score[G]]:
    """Scores best first, each with its rank; configs equal in accuracy and loss share a rank (`tied`)."""
    by_group: dict[G, list[Entry[G]]] = {}
    for entry in entries:
        by_group.setdefault(entry.group, []).append(entry)
    scores = sorted((_score(group, members) for group, members in by_group.items()), key=_sort_key)
    for position, score in enumerate(scores):
        previous = scores[position - 1] if position else None
        if previous is not None and _equal(previous, score):
            score.rank, score.tied, previous.tied = previous.rank, True, True
        else:
            score.rank = position + 1
    return scores


def winners(scores: list[Score[G]]) -> list[Score[G]]:
    """The configs ranked first (more than one when they tie); [] when nothing has a score."""
    return [s for s in scores if s.rank == 1 and s.has_score]
