"""What identifies a config's results: its resolved settings, their hash, and the hash of its seed group."""

import hashlib
import json
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

# Top-level keys that change where a run is recorded or what a sweep reads of it, not what it learns.
NOT_RESULTS = ("tracking", "hydra", "objective", "threads")
REPLICATE_KEY = "seed"  # configs that differ only here are replicates of one setting


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python values (enums as their names)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))  # a DictConfig: a dict


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys users write as overrides."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _without_nulls(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in tree.items() if v is not None}


def experiment_settings(cfg: DictConfig) -> dict[str, Any]:
    """What determines a run's results: the resolved config minus the keys in NOT_RESULTS.

    Settings left at null (off) are left out too, so adding an optional setting to netsweep does not
    change the identity of the configs recorded before it existed.
    """
    plain = to_plain(cfg)
    for key in NOT_RESULTS:
        plain.pop(key, None)
    return _without_nulls(plain)


def _digest(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig) -> str:
    """A stable hash of `experiment_settings`, so a sweep can recognise a config it already ran."""
    return _digest(experiment_settings(cfg))


def group_hash(cfg: DictConfig) -> str:
    """The hash of a config's settings without its seed: equal for the replicates of one setting."""
    settings = experiment_settings(cfg)
    settings.pop(REPLICATE_KEY, None)
    return _digest(settings)
