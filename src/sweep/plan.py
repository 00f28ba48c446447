"""Planning a batch: each job's overrides -> its composed config, fast.

Hydra composes a config from its defaults tree in 0.1-0.3 s. Jobs of a sweep mostly differ in values
(`optimizer.lr=0.1`), not in which config files they combine (`optimizer=adam`, `+sweep=decay_lr`). So
each distinct set of such structural overrides is composed once by Hydra, and each job's value overrides
are applied to a copy of it with the semantics of Hydra's override grammar: a plain `key=value` must name
an existing key, `+key=value` adds one, `++key=value` adds or overrides.
"""

import copy
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from src.outcomes import Outcome


@dataclass
class Job:
    """One job of the sweep, from its composition in the parent to its outcome."""

    index: int  # hydra.job.num
    overrides: list
    config: DictConfig  # the whole composed config, Hydra's node included
    name: str = ""
    group_name: str = ""  # the name of its config without the seed
    key: str = ""  # what identifies its results (netsweep: the config hash)
    group: str = ""  # the key shared by its replicates (netsweep: the config hash without the seed)
    run_id: str | None = None
    outcome: Outcome = Outcome.SCHEDULED
    reason: str = ""
    reused: bool = False  # its result came from an earlier run (resume)
    twin: Optional["Job"] = None  # an earlier job of the same batch with the same config: trained once, for both
    value: Any = None  # what the task returned (the sweeper's objective)
    job_return: JobReturn | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def task_config(self) -> DictConfig:
        """The config the task sees: everything but Hydra's node."""
        return OmegaConf.masked_copy(self.config, [key for key in self.config if key != "hydra"])


def override_dirname(overrides: Sequence[Override], kv_sep: str, item_sep: str, exclude_keys: Sequence[str]) -> str:
    """`hydra.job.override_dirname` as Hydra defines it: the sorted overrides, minus excluded keys."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in exclude_keys)
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
    """A value override, with the meaning and the errors Hydra gives it."""
    key, value = override.key_or_group, override.value()
    try:
        if override.is_add():
            present = OmegaConf.select(config, key, throw_on_missing=False) is not None
            if present and not isinstance(value, (dict, list)):
                raise ConfigCompositionException(
                    f"Could not append to config. An item is already at '{key}'. Either remove + prefix: "
                    f"'{override.input_line[1:]}' Or add a second + to add or override '{key}': "
                    f"'+{override.input_line}'"
                )
            OmegaConf.update(config, key, value, merge=True, force_add=True)
        elif override.is_force_add():
            OmegaConf.update(config, key, value, merge=True, force_add=True)
        else:
            try:
                OmegaConf.update(config, key, value, merge=True)
            except (ConfigAttributeError, ConfigKeyError) as exc:
                raise ConfigCompositionException(
                    f"Could not override '{key}'.\nTo append to your config use +{override.input_line}"
                ) from exc
    except OmegaConfBaseException as exc:
        raise ConfigCompositionException(f"Error merging override {override.input_line}") from exc
