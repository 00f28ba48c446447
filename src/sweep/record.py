"""A netsweep sweep as its tracking store holds it: one parent "sweep" run, a child run per config, and
the parent's manifest (which config trained in which run, and the sweep's defaults), so the report can be
rebuilt from the store alone.

The parent and every child are created here, in the sweep's parent process, before any worker starts:
workers only attach to the child run made for them (concurrent creation races, mlflow issue 10334).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.errors import SweepBusy
from src.experiment.epochs import decode_curve
from src.outcomes import RESULTS, Outcome
from src.pruning import Peer
from src.sweep.plan import Job
from src.tracking import names
from src.tracking.api import RunRecord, Store, result_per_config

StoreOpener = Callable[[str], Store]  # a tracking URI -> its store (src.tracking.opening.open_store)

# copied onto the links that stand for reused runs
REPORTABLE = ("best_val_acc", "best_val_loss", "best_val_ce", "test_acc", "test_loss", "best_epoch")


def sweep_id_for(experiment: str, keys: Sequence[str], sweeper: str = "", pruning: str = "") -> str:
    """The same grid (or the same first batch of the same sweeper) in the same experiment, pruned the same
    way, gets the same id, which is what lets a rerun resume it; a pruned and a full sweep of one grid are
    two sweeps, with their own parents and reports. `pruning`: how it prunes ('' for not at all)."""
    text = experiment + "|" + sweeper + "|" + ",".join(sorted(keys)) + (f"|{pruning}" if pruning else "")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def process_started(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), '' where that cannot be read: with
    the pid, it names one process even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _owner() -> dict[str, str]:
    return {
        names.SWEEP_HOST: socket.gethostname(),
        names.SWEEP_PID: str(os.getpid()),
        names.SWEEP_PROCESS_STARTED: process_started(os.getpid()),
    }


def running_elsewhere(parent: RunRecord) -> str:
    """'process <pid> on <host>' when another live process on this machine runs the sweep of `parent`, else ''.

    A parent left RUNNING by a process that died (SIGKILL, a reboot: its pid gone or now another process's)
    is resumed; one run from another machine cannot be checked and is resumed too."""
    host, pid = parent.tags.get(names.SWEEP_HOST), parent.tags.get(names.SWEEP_PID, "")
    if parent.outcome != Outcome.RUNNING or host != socket.gethostname() or not pid.isdigit():
        return ""
    if int(pid) == os.getpid():
        return ""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return ""
    except PermissionError:  # alive, another user's
        pass
    started = parent.tags.get(names.SWEEP_PROCESS_STARTED, "")
    if started and process_started(int(pid)) not in ("", started):
        return ""  # the pid now belongs to another process
    return f"process {pid} on {host}"


@dataclass(frozen=True)
class SweepStart:
    """What a sweep command opens its record with."""

    experiment: str  # the experiment's name
    sweep_id: str  # see `sweep_id_for`
    command: str  # the overrides it was started with
    defaults: dict[str, str]  # the flattened default config (the report rebuilds from it)
    description: str = ""  # the experiment's note, if it has none yet
    settings: Mapping[str, object] = field(default_factory=dict)  # how the sweep runs: tagged on the parent


@dataclass
class SweepRecord:
    store: Store
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # config key -> manifest entry
    defaults: dict[str, str] = field(default_factory=dict)
    was_finished: bool = False  # ... and it had ended finished, its report built

    @classmethod
    def open(cls, store: Store, start: SweepStart) -> SweepRecord:
        """Create (or, for the same sweep, reopen) the experiment and the parent run."""
        experiment_id = store.experiment_id(start.experiment, start.description)
        store.prefer_wal()
        found = store.find_sweep(start.sweep_id, experiment_id)
        if found is not None:
            busy = running_elsewhere(found)
            if busy:
                raise SweepBusy(
                    f"sweep {start.sweep_id} is already running in {busy} (parent run {found.run_id}); "
                    "wait for it to end or stop it, then rerun to resume it"
                )
            was_finished = found.outcome == Outcome.FINISHED  # read before reopening changes it
            store.run_log(found.run_id).reopen()
            store.run_log(found.run_id).set_tags({**start.settings, **_owner()})
            manifest = store.read_json(found.run_id, names.MANIFEST)
            entries = {e["config_hash"]: e for e in manifest.get("configs", [])}
            return cls(
                store,
                experiment_id,
                start.sweep_id,
                found.run_id,
                entries,
                manifest.get("defaults") or start.defaults,
                was_finished=was_finished,
            )
        parent = store.create_run(
            experiment_id,
            f"sweep {start.sweep_id}",
            {
                names.SWEEP_ID: start.sweep_id,
                names.ROLE: names.ROLE_SWEEP,
                names.OUTCOME: Outcome.RUNNING.value,
                names.SWEEP_OVERRIDES: start.command,
                **start.settings,
                **_owner(),
            },
        )
        return cls(store, experiment_id, start.sweep_id, parent.run_id, {}, start.defaults)

    def results(self, pruning: bool = False) -> dict[str, RunRecord]:
        """{config key: run} of the configs that already have a result this sweep may reuse: any result of this
        sweep (an earlier attempt of it) and, unless this sweep prunes, the finished and diverged runs of the
        experiment. A pruned run is a result of its own sweep's pruning only, and a sweep that prunes trains
        its configs itself, so that it can be compared with the full grid."""
        runs = self.store.runs([self.experiment_id], outcomes=RESULTS)
        mine = [r for r in runs if r.tags.get(names.SWEEP_ID) == self.sweep_id]
        others = (
            []
            if pruning
            else [r for r in runs if r.outcome != Outcome.PRUNED and r.tags.get(names.SWEEP_ID) != self.sweep_id]
        )
        return {**result_per_config(others), **result_per_config(mine)}

    def prepare(
        self,
        jobs: list[Job],
        done: Mapping[str, RunRecord],
        params_of: Callable[[Job], Mapping[str, object]],
        continuable: Callable[[str], bool],
    ) -> None:
        """Jobs whose config is in `done` (see `results`) are `reused`; a config whose earlier run in this
        sweep ended without a result but left a checkpoint (`continuable(run_id)`) continues in that run;
        the rest get a SCHEDULED child run, with the params `params_of(job)` gives once the job knows its
        run (so a config that never gets to start still shows its settings)."""
        in_batch: dict[str, Job] = {}
        for job in jobs:
            previous = done.get(job.key)
            if job.key in in_batch:  # a sweeper asked twice for one config (Optuna can): train it once
                job.follow(in_batch[job.key])
                continue
            earlier = self.entries.get(job.key, {}).get("run_id")
            if previous is not None:
                job.reuse(previous.run_id, previous.outcome, previous.metrics)
                self._link(job, previous)
            else:
                self._schedule(job, params_of, earlier if earlier and continuable(earlier) else None)
                in_batch[job.key] = job
            self.entries[job.key] = {
                **self.entries.get(job.key, {}),
                "config_hash": job.key,
                "name": job.name,
                "overrides": job.overrides,
                "run_id": job.run_id,
                "reused": job.reused,
            }
        self.write_manifest()

    def _schedule(self, job: Job, params_of: Callable[[Job], Mapping[str, object]], earlier: str | None) -> None:
        """The job's run, SCHEDULED: its `earlier` run, which it continues from its checkpoint, or a new child."""
        if earlier is not None:
            self.store.run_log(earlier).reschedule()
            job.schedule(earlier)
            params_of(job)  # logged by the earlier attempt already: the job only learns its run
            return
        child = self.store.create_run(
            self.experiment_id,
            job.name,
            {
                names.SWEEP_ID: self.sweep_id,
                names.CONFIG_HASH: job.key,
                names.GROUP_HASH: job.group,
                names.OUTCOME: Outcome.SCHEDULED.value,
                names.OVERRIDES: " ".join(job.overrides),
            },
            parent_run_id=self.parent_run_id,
            scheduled=True,
        )
        job.schedule(child.run_id)
        child.log_params(params_of(job))

    def _link(self, job: Job, previous: RunRecord) -> None:
        """A child under this sweep's parent standing for a result an earlier sweep trained, so the UI
        shows every config of the sweep under its parent. It carries the original's params and final
        metrics, and points at it; the report reads the original."""
        entry = self.entries.get(job.key, {})
        if previous.parent_run_id == self.parent_run_id or entry.get("link_run_id"):
            return
        carried = {k: previous.tags[k] for k in (names.CURVE, names.GROUP_HASH) if k in previous.tags}
        link = self.store.create_run(
            self.experiment_id,
            f"{job.name} (reused)",
            {
                names.SWEEP_ID: self.sweep_id,
                names.REUSED_FROM: previous.run_id,
                names.OUTCOME: previous.outcome.value,
                names.REUSED_CONFIG_HASH: job.key,
                names.OVERRIDES: " ".join(job.overrides),
                **carried,  # a pruner compares new configs with it too
            },
            parent_run_id=self.parent_run_id,
        )
        link.log_params(previous.params)
        link.log_metrics({k: v for k, v in job.metrics.items() if k in REPORTABLE})
        link.close(previous.outcome, f"reused: trained in run {previous.run_id}")
        self.entries[job.key] = {**entry, "link_run_id": link.run_id}

    def write_manifest(self) -> None:
        manifest = {"sweep_id": self.sweep_id, "configs": list(self.entries.values()), "defaults": self.defaults}
        self.store.run_log(self.parent_run_id).log_text(json.dumps(manifest, indent=1), names.MANIFEST)

    # --- while running ----------------------------------------------------------------------------

    def read_result(self, job: Job) -> None:
        """The outcome and final metrics the job's run recorded."""
        if job.run_id is not None:
            run = self.store.run(job.run_id)
            job.recorded(run.outcome, run.tags.get(names.FAILURE_REASON, ""), run.metrics)

    def curves(self) -> dict[str, Peer]:
        """The sweep's runs that published a curve (their best validation cross-entropy so far), by run id,
        as the pruning rules see them."""
        found = {}
        for run in self.store.runs([self.experiment_id], sweep_id=self.sweep_id):
            text = run.tags.get(names.CURVE)
            if text:
                key = run.tags.get(names.CONFIG_HASH) or run.tags.get(names.REUSED_CONFIG_HASH) or run.run_id
                found[run.run_id] = Peer(key, run.tags.get(names.GROUP_HASH, key), decode_curve(text))
        return found

    def untouched(self, jobs: list[Job]) -> list[Job]:
        """The jobs whose run no worker has started (safe to dispatch again)."""
        return [job for job in jobs if job.run_id and self.store.phase(job.run_id) == Outcome.SCHEDULED]

    def running(self, jobs: list[Job]) -> list[tuple[str, str]]:
        """(name, "epoch k") of the jobs whose run is training now."""
        waiting = [job for job in jobs if job.outcome == Outcome.SCHEDULED and job.run_id]
        if not waiting:
            return []
        training = {
            run.run_id
            for run in self.store.runs([self.experiment_id], sweep_id=self.sweep_id)
            if run.outcome == Outcome.RUNNING
        }  # one search, however many configs wait
        return [
            (job.name, f"epoch {self.store.epochs_logged(job.run_id)}")
            for job in waiting
            if job.run_id is not None and job.run_id in training
        ]

    # --- the end ------------------------------------------------------------------------------------

    def reconcile(self, jobs: list[Job], interrupted: bool) -> None:
        """Close every child run this sweep created that a worker left open (killed, interrupted, crashed)."""
        for job in jobs:
            if job.reused or job.run_id is None:
                continue
            job.lost("the sweep was interrupted" if interrupted else "its worker ended without a result")
            if not self.store.phase(job.run_id).ended:
                self.store.run_log(job.run_id).close(job.outcome, job.reason or None)

    def close(self, jobs: list[Job], interrupted: bool, failures: str) -> None:
        """Close the parent with the sweep's outcome, named by how many configs it holds."""
        outcome = Outcome.KILLED if interrupted else (Outcome.ERROR if failures else Outcome.FINISHED)
        parent = self.store.run_log(self.parent_run_id)
        parent.set_tags({"n_configs": len(self.entries)})
        parent.close(outcome, failures or None)
