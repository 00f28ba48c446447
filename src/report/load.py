"""A sweep read back from its tracking store: its parent's manifest, every member run and its curves,
grouped by config over seeds and ranked (src/report/ranking.py)."""

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from src.config.identity import NOT_RESULTS, REPLICATE_KEY
from src.outcomes import Outcome
from src.report.ranking import SCORED, Entry, Objective, Score, contenders, rank, winners
from src.tracking import names
from src.tracking.api import RunRecord, Store

PREFERRED_AXES = ("optimizer.lr", "model.decay")  # the assignment's question, when both are swept
Values = tuple[str | None, ...]  # a config's logged values of the swept keys (None: it logged no params)
# The final metrics a run that stopped before logging them (pruned, diverged, killed) still has, from its curve.
FROM_CURVES: dict[str, tuple[str, Callable[[list[float]], float]]] = {
    "best_val_acc": ("val_acc", max),
    "best_val_loss": ("val_loss", min),
    "best_val_ce": ("val_ce", min),
}


@dataclass
class Member:
    """One run of the sweep."""

    run_id: str
    name: str
    outcome: Outcome
    params: dict[str, str]
    metrics: dict[str, float]
    overrides: str
    history: dict[str, list[float]] = field(default_factory=dict)  # metric -> per-epoch list
    reused: bool = False  # trained by an earlier sweep (resume), not by this one

    def final(self, metric: str) -> float:
        """A final metric as the run logged it, or (the best-of-curve ones) from its curve; NaN when neither."""
        if metric in self.metrics:
            return float(self.metrics[metric])
        curve, best = FROM_CURVES.get(metric, ("", min))
        values = self.history.get(curve) or []
        return float(best(values)) if values else math.nan

    @property
    def best_val_acc(self) -> float:
        return self.final("best_val_acc")

    @property
    def best_val_loss(self) -> float:
        return self.final("best_val_loss")

    @property
    def best_val_ce(self) -> float:
        """The best validation cross-entropy (the cost without the decay penalty): what breaks accuracy ties."""
        return self.final("best_val_ce")

    @property
    def epochs_logged(self) -> int:
        return len(self.history.get("val_loss") or [])

    @property
    def seed(self) -> str | None:
        return self.params.get(REPLICATE_KEY)

    def entry(self, values: Values, objective: Objective) -> Entry[Values]:
        """The run as the ranking sees it: its objective and accuracy, and its seed to pair it by."""
        return Entry(
            values,
            self.outcome,
            self.best_val_acc,
            self.best_val_ce,
            {objective.metric: self.final(objective.metric)},
            self.seed,
        )


@dataclass
class ConfigGroup:
    """The runs of one config across seeds, and its place in the ranking."""

    values: Values  # the swept values (seed excluded), in the order of `swept_keys`
    members: list[Member]
    score: Score[Values]

    def stat(self, metric: str) -> tuple[float, float]:
        """Mean and standard deviation over the seeds with a result (NaN when none has one)."""
        values = [v for v in (m.final(metric) for m in self.members if m.outcome in SCORED) if not math.isnan(v)]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values))

    @property
    def diverged(self) -> bool:
        return any(m.outcome == Outcome.DIVERGED for m in self.members)

    @property
    def pruned(self) -> bool:
        return any(m.outcome == Outcome.PRUNED for m in self.members)

    @property
    def epochs_range(self) -> tuple[int, int]:
        """(fewest, most) epochs its scored seeds trained: unequal when some were pruned or stopped early."""
        epochs = [m.epochs_logged for m in self.members if m.outcome in SCORED] or [0]
        return min(epochs), max(epochs)


@dataclass
class SweepData:
    sweep_id: str
    parent_run_id: str
    members: list
    swept_keys: list
    groups: list  # ranked: best first
    defaults: dict | None = None  # the flattened default config the sweep recorded (older sweeps: None)
    objective: Objective = field(default_factory=Objective)  # what the groups are ranked by
    parent_tags: dict = field(default_factory=dict)  # the parent run's tags: the command, launcher settings
    experiment_id: str = ""
    started_ms: int = 0  # when the sweep's parent run was created

    @property
    def seeds(self) -> int:
        return max((len(g.members) for g in self.groups), default=0)

    @property
    def best(self) -> list:
        """The config groups ranked first (more than one when they tie); [] when nothing has a score."""
        first = winners([g.score for g in self.groups])
        return [g for g in self.groups if any(g.score is score for score in first)]

    @property
    def contenders(self) -> list:
        """The config groups that cannot be told from the winner (the winner first)."""
        level = contenders([g.score for g in self.groups])
        return [g for g in self.groups if any(g.score is score for score in level)]


def load_sweep(store: Store, sweep_id: str) -> SweepData:
    """Everything the report needs, read from the store. Raises LookupError for an unknown sweep id."""
    parent = store.find_sweep(sweep_id) or _parent_by_run_id(store, sweep_id)
    if parent is None:
        raise LookupError(
            f"no sweep with id {sweep_id!r} in {store.uri}: use the id a sweep prints as "
            "[sweep <id>] (or its parent run's id), in the store the sweep used"
        )
    sweep_id = parent.tags[names.SWEEP_ID]
    manifest = store.read_json(parent.run_id, names.MANIFEST)
    entries = [e for e in manifest.get("configs", []) if e.get("run_id")]
    if not entries:  # no manifest: the runs tagged with the sweep
        entries = [
            {"run_id": r.run_id}
            for r in store.runs([parent.experiment_id], sweep_id=sweep_id)
            if r.run_id != parent.run_id
        ]
    members = [_member(store, entry) for entry in entries]
    keys = swept_keys(members)
    defaults = manifest.get("defaults")
    objective = sweep_objective(members, defaults)
    return SweepData(
        sweep_id,
        parent.run_id,
        members,
        keys,
        ranked_groups(members, keys, objective),
        defaults,
        objective,
        dict(parent.tags),
        parent.experiment_id,
        parent.start_time_ms,
    )


def sweep_objective(members: list[Member], defaults: dict | None) -> Objective:
    """The objective the sweep's runs were given (the config key `objective`: the most common among the runs
    this sweep trained, then among all, then the recorded defaults'), else the default objective."""
    for runs in ([m for m in members if not m.reused], members):
        named = [m.params["objective"] for m in runs if m.params.get("objective")]
        if named:
            return Objective(max(sorted(set(named)), key=named.count))
    return Objective((defaults or {}).get("objective") or Objective().metric)


def _parent_by_run_id(store: Store, run_id: str) -> RunRecord | None:
    """The sweep parent run `run_id`, if that is what it is."""
    try:
        run = store.run(run_id)
    except Exception:  # not a run id of this store
        return None
    return run if run.tags.get(names.ROLE) == names.ROLE_SWEEP and names.SWEEP_ID in run.tags else None


def _member(store: Store, entry: dict) -> Member:
    run = store.run(entry["run_id"])
    return Member(
        run.run_id,
        run.name,
        run.outcome,
        run.params,
        run.metrics,
        run.tags.get(names.OVERRIDES, ""),
        store.history(run.run_id),
        bool(entry.get("reused", False)),
    )


def not_trained(key: str) -> bool:
    """A param that says where or how a run was recorded, not what it trained (the config hash leaves these
    out too: `tracking.*`, `objective`, `threads`)."""
    return key.split(".", 1)[0] in NOT_RESULTS


def param(member: Member, key: str) -> str | None:
    """A member's logged value of `key`. A setting the run's netsweep did not have yet (a reused run from an
    older version) reads as unset, "None", as the config hash counts it; a run that logged no params: None."""
    return member.params.get(key, str(None)) if member.params else None


def swept_keys(members: list) -> list:
    """Params whose value differs between member runs (tracking settings and the seed excluded; runs that
    logged no params, which older sweeps left for configs that never started, do not count)."""
    members = [m for m in members if m.params]
    keys = sorted({key for m in members for key in m.params})
    varying = [
        key
        for key in keys
        if not not_trained(key) and key != REPLICATE_KEY and len({param(m, key) for m in members}) > 1
    ]
    preferred = [key for key in PREFERRED_AXES if key in varying]
    return preferred + [key for key in varying if key not in preferred]


def sort_value(value: str | None) -> tuple[int, float, str]:
    """Numbers first, in numeric order, then any other text (and unset) in alphabetical order."""
    try:
        return (0, float(value or ""), "")
    except ValueError:
        return (1, 0.0, str(value))


def ranked_groups(members: list, keys: list, objective: Objective | None = None) -> list[ConfigGroup]:
    """Members grouped by their swept values (seeds together), best first by the one ranking."""
    objective = objective or Objective()
    by_values: defaultdict[Values, list[Member]] = defaultdict(list)
    for member in members:
        by_values[tuple(param(member, key) for key in keys)].append(member)
    scores = rank((m.entry(values, objective) for values, group in by_values.items() for m in group), objective)
    return [ConfigGroup(s.group, by_values[s.group], s) for s in scores]


def axis_values(data: SweepData, position: int) -> list:
    """The distinct values of swept key `position`, in numeric order."""
    return sorted({g.values[position] for g in data.groups}, key=sort_value)
