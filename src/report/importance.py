"""How much each swept key matters: the share of the spread in the configs' ranks that the key alone
explains (its main effect, as fANOVA's first-order terms), with an interval bootstrapped over configs.

Ranks rather than raw values, so that one diverged config (ranked last) or one huge loss does not decide
everything; a numeric key with many values (a sampled sweep) is cut into at most BINS bins of equal counts.
The share is the adjusted eta-squared, (SS_between - (k - 1) MS_within) / SS_total, clipped at 0: a key
with k values explains (k - 1)/(n - 1) of the ranks of n configs by chance alone, which plain eta-squared
would count as importance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BINS = 5
RESAMPLES = 300
INTERVAL = (5.0, 95.0)  # percentiles of the bootstrap: a 90 % interval


@dataclass(frozen=True)
class Importance:
    key: str
    share: float  # on all configs
    low: float  # bootstrap interval
    high: float


def levels(values: list[str | None]) -> np.ndarray:
    """Each config's level of one key: its value, or for a numeric key with more than BINS values, its bin
    (equal counts, on a log scale when the values are positive)."""
    try:
        numbers = np.array([float(str(v)) for v in values], dtype=float)
    except ValueError:
        return np.unique(np.array([str(v) for v in values]), return_inverse=True)[1]
    if len(np.unique(numbers)) <= BINS:
        return np.unique(numbers, return_inverse=True)[1]
    scaled = np.log(numbers) if (numbers > 0).all() else numbers
    ranks = np.argsort(np.argsort(scaled, kind="stable"), kind="stable")
    return ranks * BINS // len(ranks)


def explained(level: np.ndarray, ranks: np.ndarray) -> float:
    """The adjusted eta-squared of `ranks` grouped by `level` (see the module docstring)."""
    n = len(ranks)
    groups = np.unique(level)
    k = len(groups)
    total = float(((ranks - ranks.mean()) ** 2).sum())
    if k < 2 or n <= k or total == 0:
        return 0.0
    between = sum(float((level == g).sum()) * (ranks[level == g].mean() - ranks.mean()) ** 2 for g in groups)
    within = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * within) / total)


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (scipy.stats.rankdata's default, through pandas, which the
    report has imported already: scipy.stats would cost it ~0.5 s of imports)."""
    return pd.Series(values).rank(method="average").to_numpy()


def importances(table: dict[str, list[str | None]], costs: list[float], seed: int = 0) -> list[Importance]:
    """Each key's share (most important first) for configs whose values of each key are `table[key]` and
    whose objective, turned so lower is better, is `costs` (NaN: no result, ranked last)."""
    cost = np.array(costs, dtype=float)
    ranks = rankdata(np.where(np.isnan(cost), np.inf, cost))  # ties share their mean rank
    coded = {key: levels(values) for key, values in table.items()}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ranks), size=(RESAMPLES, len(ranks)))
    found = []
    for key, level in coded.items():
        boot = [explained(level[d], rankdata(ranks[d])) for d in draws]
        low, high = np.percentile(boot, INTERVAL)
        found.append(Importance(key, explained(level, ranks), float(low), float(high)))
    return sorted(found, key=lambda imp: -imp.share)
