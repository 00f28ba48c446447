"""Planning a batch: each job's overrides -> its composed config, fast.

Hydra composes a config from its defaults tree in 0.1-0.3 s. Jobs of a sweep mostly differ in values
(`optimizer.lr=0.1`), not in which config files they combine (`optimizer=adam`, `+sweep=decay_lr`). So
each distinct set of such structural overrides is composed once by Hydra, and each job's value overrides
are applied to a copy of it with the semantics of Hydra's override grammar: a plain `key=value` must name
an existing key, `+key=value` adds one, `++key=value` adds or overrides.
"""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from src.config.override_errors import BadOverride, KeyAlreadySet, UnknownKey
from src.outcomes import Outcome


@dataclass(frozen=True)
class Ending:
    """How a job ended, as its worker reported it (see `src.sweep.jobs.classify`)."""

    outcome: Outcome
    reason: str = ""
    value: Any = None  # what the task returned (the sweeper's objective), for a finished job


@dataclass
class Job:
    """One job of the sweep, from its composition in the parent to its outcome.

    Its fields are read anywhere but written only by its methods, one per step of its life: the app
    names it (`identify`), the sweep record gives it a run or a result (`schedule`, `reuse`, `follow`),
    its worker's result ends it (`end`), its run's own account completes it (`recorded`), and the
    reconciliation closes what no result ended (`lost`, `copy_twin`)."""

    index: int  # hydra.job.num
    overrides: list[str]
    config: DictConfig  # the whole composed config, Hydra's node included
    name: str = ""
    group_name: str = ""  # the name of its config without the seed
    key: str = ""  # what identifies its results (netsweep: the config hash)
    group: str = ""  # the key shared by its replicates (netsweep: the config hash without the seed)
    run_id: str | None = None
    outcome: Outcome = Outcome.SCHEDULED
    reason: str = ""
    reused: bool = False  # its result came from an earlier run (resume)
    twin: Job | None = None  # an earlier job of the same batch with the same config: trained once, for both
    value: Any = None  # what the task returned (the sweeper's objective)
    job_return: JobReturn | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def task_config(self) -> DictConfig:
        """The config the task sees: everything but Hydra's node, on its schema (as Hydra's `run_job` makes it)."""
        task = copy.deepcopy(self.config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        return task

    def identify(self, name: str, key: str, group: str, group_name: str) -> None:
        """What the app calls it and what identifies its results (see the fields)."""
        self.name, self.key, self.group, self.group_name = name, key, group, group_name

    def schedule(self, run_id: str) -> None:
        """It trains in run `run_id`, created for it."""
        self.run_id = run_id

    def reuse(self, run_id: str, outcome: Outcome, metrics: dict[str, float]) -> None:
        """An earlier run already holds its result: it is not trained again."""
        self.run_id, self.outcome, self.reused, self.metrics = run_id, outcome, True, dict(metrics)

    def follow(self, twin: Job) -> None:
        """An earlier job of this batch has the same config: that one trains, for both."""
        self.twin, self.run_id, self.reused = twin, twin.run_id, True

    def copy_twin(self) -> None:
        """The job it follows has ended: it ends the same way."""
        if self.twin is not None:
            twin = self.twin
            self.outcome, self.reason, self.value, self.metrics = twin.outcome, twin.reason, twin.value, twin.metrics

    def end(self, ending: Ending, job_return: JobReturn | None) -> None:
        """Its worker came back: with Hydra's `job_return`, or None when the worker died."""
        self.outcome, self.reason, self.value, self.job_return = ending.outcome, ending.reason, ending.value, job_return

    def recorded(self, outcome: Outcome, reason: str, metrics: dict[str, float]) -> None:
        """What its run recorded: the outcome once ended (pruned, say), and its final metrics; the reason
        its worker gave comes first."""
        if outcome.ended:
            self.outcome, self.reason = outcome, self.reason or reason
        self.metrics = dict(metrics)

    def go_on(self) -> None:
        """It waited at a pruning rung, which is decided: it is dispatched again (to train on, or to close)."""
        if self.outcome == Outcome.PAUSED:
            self.outcome, self.reason = Outcome.SCHEDULED, ""

    def lost(self, reason: str) -> None:
        """No result ended it (interrupted, or its worker ended without one)."""
        if not self.outcome.ended:
            self.outcome, self.reason = Outcome.KILLED, reason


def override_dirname(overrides: Sequence[Override], kv_sep: str, item_sep: str, exclude_keys: Sequence[str]) -> str:
    """`hydra.job.override_dirname` as Hydra defines it: the sorted overrides, minus excluded keys."""
    lines = sorted(str(o.input_line) for o in overrides if o.key_or_group not in exclude_keys)
    return re.sub("=", kv_sep, item_sep.join(lines))


class Composer:
    """Composes the jobs of a sweep against its master config (see the module docstring)."""

    def __init__(self, config_loader, master: DictConfig):
        self.config_loader, self.master = config_loader, master
        self.parser = OverridesParser.create(config_loader=config_loader)
        self.templates: dict = {}
        self._groups_under: dict = {}  # parent group -> the groups in it, asked of Hydra once

    def _is_group(self, key: str) -> bool:
        if "." in key:  # a dotted key names a value; groups are paths such as optimizer or hydra/launcher
            return False
        parent, _, name = key.rpartition("/")
        if parent not in self._groups_under:
            self._groups_under[parent] = set(self.config_loader.list_groups(parent))
        return name in self._groups_under[parent]

    def _structural(self, override: Override) -> bool:
        """Overrides that change which configs are combined (or Hydra's own), rather than a value."""
        return (
            override.package is not None
            or override.is_delete()
            or override.is_hydra_override()
            or self._is_group(override.key_or_group)
        )

    def compose(self, overrides: Sequence[str], index: int) -> DictConfig:
        """The config of job `index` with `overrides`, as Hydra's `load_sweep_config` would compose it."""
        parsed = self.parser.parse_overrides(list(overrides))
        structural = tuple(o.input_line for o in parsed if self._structural(o))
        if structural not in self.templates:
            template = self.config_loader.load_sweep_config(self.master, list(structural))
            self.templates[structural] = (template, _frozen(template))
        template, frozen = self.templates[structural]
        config = pickle.loads(frozen) if frozen else copy.deepcopy(template)
        OmegaConf.copy_cache(from_config=template, to_config=config)
        for override in parsed:
            if not self._structural(override):
                apply_override(config, override)
        task_overrides = [o for o in parsed if not o.is_hydra_override()]
        dirname_settings = config.hydra.job.config.override_dirname
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task_overrides]
            config.hydra.job.override_dirname = override_dirname(
                task_overrides, dirname_settings.kv_sep, dirname_settings.item_sep, dirname_settings.exclude_keys
            )
            config.hydra.job.id = f"{config.hydra.job.name}_{index}"
            config.hydra.job.num = index
        return config


def _frozen(template: DictConfig) -> bytes | None:
    """The template pickled: unpickling copies a whole Hydra config several times faster than deepcopy does.
    None when it cannot be pickled (a plugin's schema class re-imported by Hydra's plugin scan)."""
    try:
        return pickle.dumps(template)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def apply_override(config: DictConfig, override: Override) -> None:
    """A value override, with the meaning Hydra gives it, and Hydra's errors as netsweep's typed ones."""
    key, value, line = override.key_or_group, override.value(), str(override.input_line)
    try:
        if override.is_add():
            present = OmegaConf.select(config, key, throw_on_missing=False) is not None
            if present and not isinstance(value, (dict, list)):
                raise KeyAlreadySet(key, line)
            OmegaConf.update(config, key, value, merge=True, force_add=True)
        elif override.is_force_add():
            OmegaConf.update(config, key, value, merge=True, force_add=True)
        else:
            try:
                OmegaConf.update(config, key, value, merge=True)
            except (ConfigAttributeError, ConfigKeyError) as exc:
                raise UnknownKey(key, line) from exc
    except OmegaConfBaseException as exc:
        raise BadOverride(key, line, value, exc) from exc
