"""`run_pack`: several configs of one net trained as one stacked computation (src/nn/pack.py), each recorded
in its own run exactly as `run_config` records it alone.

Each member is opened as `run_config` opens a run (config checked, data loaded, its run created or
continued, its inputs recorded) and closed as it closes one (final scores, Figure 1, history, model,
outcome); only the training in between is shared. What ends one member (divergence, patience, its pruner,
a pause at a synchronous-halving rung, an error while opening or closing it) ends only that member. An
interrupt ends every member still training `killed`, each with its checkpoint, as it would end a lone run.
Members that stand at different epochs (some continue from checkpoints) train in one pack per epoch.
While a member's own work runs (opening, its epochs' hooks, closing), `current_member` says which it is, so
its log lines can go where its own job's would (src/sweep/pack_logs.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from src.experiment.job import SweepJob
from src.experiment.recording import closing_on_failure
from src.experiment.runner import Begun, FitOutcome, RunSummary, array_backend, begin, finish, log_result, open_config
from src.nn.arrays import Metrics
from src.nn.pack import Member, fit_pack
from src.nn.train import Callbacks, Progress

log = logging.getLogger("netsweep")

PackResult = RunSummary | BaseException  # a member's summary, or what `run_config` would have raised for it
_MEMBER: contextvars.ContextVar[int | None] = contextvars.ContextVar("netsweep_pack_member", default=None)


def current_member() -> int | None:
    """The index (in `run_pack`'s entries) of the member whose own work runs now; None for the pack's."""
    return _MEMBER.get()


@contextlib.contextmanager
def _as_member(index: int) -> Iterator[None]:
    token = _MEMBER.set(index)
    try:
        yield
    finally:
        _MEMBER.reset(token)


@dataclass(frozen=True)
class PackEntry:
    """One config of a pack: what `run_config` takes for it."""

    cfg: DictConfig
    overrides: Sequence[str]
    output_dir: Path | None
    sweep_job: SweepJob | None


def run_pack(entries: Sequence[PackEntry]) -> list[PackResult]:
    """Train `entries` as packs and record each in its run; per entry, in order, its `RunSummary` or the
    exception `run_config` would have raised for it (ConfigError, RunDiverged, RunPaused, an interrupt...)."""
    results: dict[int, PackResult] = {}
    ready: list[tuple[int, Begun]] = []
    interrupt: BaseException | None = None
    for index, entry in enumerate(entries):
        if interrupt is not None:  # not opened: its run stays SCHEDULED, for the sweep to close
            results[index] = interrupt
            continue
        try:
            with _as_member(index):
                ctx = open_config(entry.cfg, entry.overrides, entry.output_dir, entry.sweep_job)
                with closing_on_failure(ctx.run):
                    begun = begin(ctx)
        except BaseException as exc:  # noqa: B036 - it ends this member only, as it would end a lone run
            results[index] = exc
            interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
            continue
        if isinstance(begun, RunSummary):  # closed at the rung its sweep pruned it at
            results[index] = begun
            with _as_member(index):
                log_result(begun)
        else:
            ready.append((index, begun))
    for members in _by_epoch(ready):
        outcomes = [interrupt] * len(members) if interrupt else _train(members)
        for (index, begun), outcome in zip(members, outcomes, strict=True):
            with _as_member(index):
                result = results[index] = _close(begun, outcome)
            if isinstance(result, KeyboardInterrupt):
                interrupt = result
    return [results[index] for index in range(len(entries))]


def _by_epoch(ready: list[tuple[int, Begun]]) -> list[list[tuple[int, Begun]]]:
    """The members that stand at the same epoch, together (a pack trains members from one epoch on)."""
    groups: dict[int, list[tuple[int, Begun]]] = {}
    for index, begun in ready:
        groups.setdefault(begun.training.progress.epochs_done, []).append((index, begun))
    return [groups[epoch] for epoch in sorted(groups)]


def _train(members: list[tuple[int, Begun]]) -> list[FitOutcome]:
    """One pack's training: each member's FitResult or Diverged, or for all of them what interrupted it."""
    first = members[0][1]
    on_step = first.callbacks().on_step  # the first member's governor paces the pack's steps
    guards = [_Guard(b.callbacks(), index) for index, b in members]
    pack = [
        Member(b.training.params, b.training.optimizer, b.training.progress, g.hooks())
        for (_, b), g in zip(members, guards, strict=True)
    ]
    log.info(f"training a pack of {len(pack)} configs")
    try:
        arrays = array_backend(first.ctx.settings)
        trained = fit_pack(first.training.data, pack, settings=first.training.loop, backend=arrays, on_step=on_step)
    except BaseException as exc:  # noqa: B036 - an interrupt or a failure of the pack itself ends each member with it
        return [exc] * len(members)
    return [guard.failure or outcome for guard, outcome in zip(guards, trained, strict=True)]


@dataclass
class _Guard:
    """A member's own hooks in a pack: what one of them raises (its store busy, its checkpoint unwritable)
    ends that member's slice only, and becomes its outcome, as it would end a lone run."""

    callbacks: Callbacks
    index: int  # the member's place in `run_pack`'s entries (`current_member` while its hooks run)
    failure: Exception | None = None

    def hooks(self) -> Callbacks:
        return Callbacks(on_epoch_end=self.on_epoch_end, on_progress=self.on_progress)

    def on_epoch_end(self, epoch: int, row: Metrics) -> str | None:
        if self.failure is None and self.callbacks.on_epoch_end is not None:
            try:
                with _as_member(self.index):
                    return self.callbacks.on_epoch_end(epoch, row)
            except Exception as exc:  # noqa: BLE001 - recorded: the member ends with it
                self.failure = exc
        return f"failed: {self.failure}" if self.failure is not None else None

    def on_progress(self, progress: Progress) -> None:
        if self.failure is None and self.callbacks.on_progress is not None:
            try:
                with _as_member(self.index):
                    self.callbacks.on_progress(progress)
            except Exception as exc:  # noqa: BLE001 - its slice ends at the next epoch's end
                self.failure = exc


def _close(begun: Begun, outcome: FitOutcome | BaseException) -> PackResult:
    try:
        with closing_on_failure(begun.ctx.run):
            summary = finish(begun, outcome)
    except BaseException as exc:  # noqa: B036 - what run_config would have raised for this member
        return exc
    log_result(summary)
    return summary
