"""`run_pack`: several configs of one net trained as one stacked computation (src/nn/pack.py), each recorded
in its own run exactly as `run_config` records it alone.

Each member is opened as `run_config` opens a run (config checked, data loaded, its run created or
continued, its inputs recorded) and closed as it closes one (final scores, Figure 1, history, model,
outcome); only the training in between is shared. What ends one member (divergence, patience, its pruner,
a pause at a synchronous-halving rung, an error while opening or closing it) ends only that member. An
interrupt ends every member still training `killed`, each with its checkpoint, as it would end a lone run.
Members that stand at different epochs (some continue from checkpoints) train in one pack per epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from src.experiment.job import SweepJob
from src.experiment.recording import closing_on_failure
from src.experiment.runner import Begun, FitOutcome, RunSummary, array_backend, begin, finish, open_config
from src.nn.pack import Member, fit_pack

log = logging.getLogger("netsweep")

PackResult = RunSummary | BaseException  # a member's summary, or what `run_config` would have raised for it


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
    for index, entry in enumerate(entries):
        try:
            ctx = open_config(entry.cfg, entry.overrides, entry.output_dir, entry.sweep_job)
            with closing_on_failure(ctx.run):
                begun = begin(ctx)
        except BaseException as exc:  # noqa: B036 - it ends this member only, as it would end a lone run
            results[index] = exc
            continue
        if isinstance(begun, RunSummary):
            results[index] = begun
        else:
            ready.append((index, begun))
    interrupt: BaseException | None = None
    for members in _by_epoch(ready):
        outcomes = [interrupt] * len(members) if interrupt else _train(members)
        for (index, begun), outcome in zip(members, outcomes, strict=True):
            results[index] = _close(begun, outcome)
            if isinstance(outcome, KeyboardInterrupt):
                interrupt = outcome
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
    pack = [
        Member(b.training.params, b.training.optimizer, b.training.progress, replace(b.callbacks(), on_step=None))
        for _, b in members
    ]
    log.info(f"training a pack of {len(pack)} configs")
    try:
        arrays = array_backend(first.ctx.settings)
        return list(fit_pack(first.training.data, pack, settings=first.training.loop, backend=arrays, on_step=on_step))
    except BaseException as exc:  # noqa: B036 - an interrupt or a failure of the pack ends each member with it
        return [exc] * len(members)


def _close(begun: Begun, outcome: FitOutcome | BaseException) -> PackResult:
    try:
        with closing_on_failure(begun.ctx.run):
            return finish(begun, outcome)
    except BaseException as exc:  # noqa: B036 - what run_config would have raised for this member
        return exc
