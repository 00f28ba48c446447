"""Synchronous successive halving across a batch's configs (`hydra.launcher.prune=sha`), in the sweep's parent.

Each config trains to its next rung and pauses there (src/experiment/runner.py `Pause`: its checkpoint
written, its run SCHEDULED again). When every config of the round has paused or ended, the rung is decided
once for all of them (`src.pruning.halve`, with the sweep's other runs as peers): the best go on to the next
rung, the others are dispatched once more to be closed as pruned from their checkpoint, with the records a
run its pruner stopped has. A config past the rung already (a rerun continuing from a later checkpoint)
pauses at once, so decisions are taken again in order and come out as they did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from src.outcomes import Outcome
from src.pruning import Peer, PruneRule, halve
from src.sweep.plan import Job

Curves = Callable[[], dict[str, Peer]]  # the sweep's runs that published a curve, by run id


class Halving:
    """Where each job of the sweep stands in the rounds: the rung it trains to next, or why it was pruned."""

    def __init__(self, rule: PruneRule, curves: Curves):
        self.rule, self.curves = rule, curves
        self.next_rung: dict[int, int] = {}  # job index -> how many of its rungs it has passed
        self.verdicts: dict[int, str] = {}  # job index -> why it stops at the rung it waits at

    def _rungs(self, job: Job) -> list[int]:
        return self.rule.rungs(int(job.config.epochs))

    def pause_at(self, job: Job) -> int | None:
        """The rung `job` trains to and waits at, or None: to its end (or to be closed, when pruned)."""
        if not self.rule.synchronous or job.index in self.verdicts:
            return None
        rungs, passed = self._rungs(job), self.next_rung.get(job.index, 0)
        return rungs[passed] if passed < len(rungs) else None

    def prune_now(self, job: Job) -> str | None:
        return self.verdicts.get(job.index)

    def decide(self, jobs: Iterable[Job]) -> tuple[list[Job], list[str]]:
        """Decide the rung of every job of `jobs` that paused there: those jobs, ready to dispatch again (to
        train on, or to be closed as pruned), and a line per rung decided."""
        waiting: dict[int, list[Job]] = {}
        for job in jobs:
            if job.outcome == Outcome.PAUSED:
                rung = self.pause_at(job)
                if rung is not None:
                    waiting.setdefault(rung, []).append(job)
        if not waiting:
            return [], []
        curves = self.curves()  # a store that stays busy fails the sweep here; its runs are closed as usual
        again, lines = [], []
        for rung, paused in sorted(waiting.items()):
            mine = {job.run_id for job in paused}
            candidates = [Peer(job.key, job.group, _curve(curves, job)) for job in paused]
            others = [peer for run_id, peer in curves.items() if run_id not in mine]
            verdicts = halve(self.rule, rung, candidates, others)
            going = [job for job in paused if job.key not in verdicts]
            alone = len({job.group for job in going}) == 1 and not any(len(p.curve) > rung for p in others)
            for job in paused:
                if job.key in verdicts:
                    self.verdicts[job.index] = verdicts[job.key]
                else:  # the last config standing, with no run of the sweep ahead of it: nothing left to decide
                    self.next_rung[job.index] = len(self._rungs(job)) if alone else self.next_rung.get(job.index, 0) + 1
                job.go_on()
            again.extend(paused)
            lines.append(
                f"rung at epoch {rung} decided: {len(going)} of {len(paused)} configs go on"
                + (f", {len(verdicts)} pruned" if verdicts else "")
                + (" (the last one standing trains to its end)" if alone and verdicts else "")
            )
        return again, lines


def _curve(curves: dict[str, Peer], job: Job) -> list[float]:
    """The curve a paused job's run published (none: it cannot be ranked at the rung, and goes on)."""
    found = curves.get(str(job.run_id))
    return found.curve if found is not None else []
