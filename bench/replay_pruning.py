"""Replay pruning rules on the real curves of a full sweep, to choose their defaults from measurements.

    python bench/replay_pruning.py sqlite:///path/mlflow.db [SWEEP_ID] [--workers 2]

Reads every finished run of a sweep that trained in full (each run's published curve: its best validation
cross-entropy so far per epoch), then replays, with netsweep's own decision code (`src.pruning.prune_among`
for asha, `halve` for sha), what each rule would have trained: W workers taking the configs in the sweep's
order, one epoch per time step, a config seeing the other configs' curves as far as they had trained. For
each rule and first rung it prints the share of the grid's epochs trained and whether the full grid's winner
(the lowest mean best val_ce over its seeds) would have trained to its end.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.pruning import Peer, PruneRule, halve, prune_among  # noqa: E402


@dataclass(frozen=True)
class Curve:
    key: str  # the run's config
    group: str  # its config without the seed
    values: list[float]  # best val_ce so far, per epoch


def replay_asha(curves: list[Curve], rule: PruneRule, workers: int) -> dict[str, int]:
    """Epochs each config trains under asynchronous pruning, configs dispatched in the order given."""
    epochs = len(curves[0].values)
    queue, running = list(curves), []
    trained: dict[str, int] = {}
    pruned: dict[str, str] = {}
    while queue or running:
        while queue and len(running) < workers:
            running.append(queue.pop(0))
            trained[running[-1].key] = 0
        for curve in list(running):
            trained[curve.key] += 1
            epoch = trained[curve.key]
            peers = [
                Peer(c.key, c.group, c.values[: trained[c.key]], pruned.get(c.key))
                for c in curves
                if c.key in trained and c.key != curve.key
            ]
            reason = prune_among(rule, epoch, epochs, Peer(curve.key, curve.group, curve.values[:epoch]), peers)
            if reason:
                pruned[curve.key] = reason
            if reason or epoch == epochs:
                running.remove(curve)
    return trained


def replay_sha(curves: list[Curve], rule: PruneRule) -> dict[str, int]:
    """Epochs each config trains under synchronous halving (every config waits at each rung)."""
    epochs = len(curves[0].values)
    going, trained = list(curves), {c.key: epochs for c in curves}
    for rung in rule.rungs(epochs):
        verdicts = halve(rule, rung, [Peer(c.key, c.group, c.values[:rung]) for c in going])
        for curve in going:
            if curve.key in verdicts:
                trained[curve.key] = rung
        going = [c for c in going if c.key not in verdicts]
    return trained


def winner(curves: list[Curve]) -> str:
    """The full grid's best config (group): the lowest mean best val_ce over its seeds."""
    groups: dict[str, list[float]] = {}
    for curve in curves:
        groups.setdefault(curve.group, []).append(curve.values[-1])
    return min(groups, key=lambda group: sum(groups[group]) / len(groups[group]))


def table(curves: list[Curve], workers: int, first_rungs=(1, 2, 3, 5)) -> list[tuple[str, float, bool]]:
    """(rule, share of the grid's epochs trained, the full winner kept) for asha and sha at each first rung."""
    best, total = winner(curves), len(curves) * len(curves[0].values)
    rows = []
    for name in ("asha", "sha"):
        for first in first_rungs:
            rule = PruneRule(name, min_epochs=first, factor=3)
            trained = replay_asha(curves, rule, workers) if name == "asha" else replay_sha(curves, rule)
            kept = all(trained[c.key] == len(c.values) for c in curves if c.group == best)
            rows.append((f"{name} first rung {first}", sum(trained.values()) / total, kept))
    return rows


def load(uri: str, sweep_id: str | None) -> list[Curve]:
    """The curves of a sweep's finished runs, in the order they were created (the sweep's dispatch order)."""
    from src.experiment.epochs import decode_curve
    from src.tracking import names
    from src.tracking.opening import open_store

    store = open_store(uri)
    parents = store.sweeps()
    parent = next(p for p in parents if sweep_id is None or p.tags.get(names.SWEEP_ID) == sweep_id)
    runs = store.runs([parent.experiment_id], sweep_id=parent.tags[names.SWEEP_ID])
    children = sorted(
        (r for r in runs if r.parent_run_id == parent.run_id and names.CURVE in r.tags), key=lambda r: r.start_time_ms
    )
    return [
        Curve(r.tags[names.CONFIG_HASH], r.tags[names.GROUP_HASH], decode_curve(r.tags[names.CURVE])) for r in children
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("sweep_id", nargs="?")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    curves = load(args.uri, args.sweep_id)
    print(f"{len(curves)} runs, {len(curves[0].values)} epochs; full-grid winner {winner(curves)[:12]}")
    for name, share, kept in table(curves, args.workers):
        print(f"{name:<22} {share:6.1%} of the epochs   winner kept: {'yes' if kept else 'NO'}")


if __name__ == "__main__":
    main()
