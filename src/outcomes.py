"""The `Outcome` of a run: the one vocabulary for how a run stands or ended; imports nothing of netsweep's."""

from enum import Enum


class Outcome(str, Enum):
    """How a run stands (scheduled, running) or how it ended.

    Stored as the run's `outcome` tag by its value ("finished", ...); the tracking layer maps each to the
    MLflow status that fits it.
    """

    SCHEDULED = "scheduled"  # created by a sweep, waiting for a worker
    RUNNING = "running"
    FINISHED = "finished"  # trained every epoch, or stopped early by its own patience
    DIVERGED = "diverged"  # the cost exploded: a result of the config, not a failure of the tool
    PRUNED = "pruned"  # stopped by the sweep's pruner because other configs were doing better
    PAUSED = "paused"  # a sweep's run waiting at a pruning rung, from its checkpoint, for the rung's decision
    ERROR = "error"  # raised an exception
    KILLED = "killed"  # interrupted, or its worker died

    def __str__(self) -> str:
        return self.value

    @property
    def ended(self) -> bool:
        return self not in (Outcome.SCHEDULED, Outcome.RUNNING, Outcome.PAUSED)

    @property
    def is_result(self) -> bool:
        """A result of the sweep (resume does not train it again, the exit code stays 0)."""
        return self in RESULTS

    @property
    def failed(self) -> bool:
        """Ended without a result: rerunning the sweep trains it again."""
        return self in (Outcome.ERROR, Outcome.KILLED)


RESULTS = frozenset({Outcome.FINISHED, Outcome.DIVERGED, Outcome.PRUNED})
