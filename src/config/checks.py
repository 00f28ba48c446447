"""Checks that types cannot express (a positive learning rate, a fraction inside (0, 1)) and keys no schema
declares, each failing with one line that names the key, the value and what to use instead.

Settings with a fixed set of values are Enums in the schemas (src/config/schema.py), checked by OmegaConf
when the config is composed; the range checks are declared once, in `RANGES`.
"""

import dataclasses
import difflib
import functools
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config.naming import format_value
from src.config.schema import CONF_DIR, SCHEMAS, Config
from src.errors import ConfigError
from src.nn.optim import OPTIMIZERS

SCHEMA_PREFIX = "/schema/"  # how a YAML file of conf/ names its schema in its defaults list


def schema_keys() -> list[str]:
    """Every dotted key some schema declares (all data sources and optimizers together)."""
    keys = []
    for field in dataclasses.fields(Config):
        group_schemas = [node for path, node in SCHEMAS.items() if path.split("/")[0] == field.name]
        if not group_schemas:
            keys.append(field.name)
        for node in group_schemas:
            keys.extend(f"{field.name}.{inner.name}" for inner in dataclasses.fields(node))
    return sorted(set(keys))


def did_you_mean(key: str, candidates: Iterable[str] | None = None) -> str:
    """' (did you mean optimizer.lr?)' for a near miss or a key without its group ('lr'), else ''."""
    names = list(schema_keys() if candidates is None else candidates)
    matches = [c for c in names if c.rsplit(".", 1)[-1] == key and c != key]
    matches = matches or difflib.get_close_matches(key, [c for c in names if c != key], n=1, cutoff=0.6)
    return f" (did you mean {matches[0]}?)" if matches else ""


@functools.cache
def group_files(group: str) -> dict[str, DictConfig]:
    """{option: its YAML file as OmegaConf reads it} of a config group in conf/ ({} for no such group)."""
    return {path.stem: _load(path) for path in sorted((CONF_DIR / group).glob("*.yaml"))}


def _load(path: Path) -> DictConfig:
    loaded = OmegaConf.load(path)
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return loaded


def schema_name(group: str, option: DictConfig) -> str | None:
    """The schema an option's YAML names in its defaults list (`/schema/data/idx@_here_` -> idx)."""
    prefix = f"{SCHEMA_PREFIX}{group}/"
    for entry in option.get("defaults", []):
        if isinstance(entry, str) and entry.startswith(prefix):
            return entry.removeprefix(prefix).partition("@")[0]
    return None


def group_options(group: str) -> dict[str, str]:
    """{option: schema} of a config group, from its YAML files in conf/ (`data`: mnist -> idx, ...)."""
    found = {}
    for option, loaded in group_files(group).items():
        schema = schema_name(group, loaded)
        if schema is not None:
            found[option] = schema
    return found


def unknown_key_message(key: str, siblings: Iterable[str] = ()) -> str:
    """What to say of a key the composed config does not have: a key of another option of its group, a group
    that needs `+`, or a near miss among netsweep's keys and the `siblings` (the keys of the node that lacks
    it: how Hydra's own settings, `hydra.launcher.*` among them, get a suggestion)."""
    if key.startswith("hydra."):
        parent, _, leaf = key.rpartition(".")
        close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)  # by name: they share `parent`
        nearby = f" (did you mean {parent}.{close[0]}?)" if close else ""
        return f"unknown Hydra setting {key!r}{nearby}: check its spelling (python -m src.run --cfg hydra lists them)"
    group, _, leaf = key.lstrip("+").partition(".")
    options = group_options(group) if leaf else {}
    owners = [
        option
        for option, schema in options.items()
        if leaf in {f.name for f in dataclasses.fields(SCHEMAS[f"{group}/{schema}"])}
    ]
    if owners:
        choices = ", ".join(f"{group}={option}" for option in owners)
        return (
            f"{key} is not a key of the {group} you chose: it belongs to {choices}; choose one, "
            f"e.g. {group}={owners[0]} {key}=..."
        )
    if not leaf and (CONF_DIR / group).is_dir() and group not in {f.name for f in dataclasses.fields(Config)}:
        return f"{group} is a config group that is added: write +{group}=<name> (a sweep runs with -m)"
    return (
        f"unknown config key {key!r}{did_you_mean(key)}: check its spelling "
        "(python -m src.run --cfg job lists every key)"
    )


def unknown_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys added with `+key=value` that no schema declares (Hydra lets `+` bypass struct mode)."""
    schema = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    found = []
    for key in map(str, node):
        if key == "hydra":
            continue
        if declared is not None and key not in declared:
            found.append(f"{prefix}{key}")
        elif not OmegaConf.is_missing(node, key) and OmegaConf.is_dict(node[key]):
            found.extend(unknown_keys(node[key], f"{prefix}{key}."))
    return found


def choices(schema: type | None, name: str) -> list[str]:
    """The values field `name` of `schema` may take when it is an Enum ([] for any other field)."""
    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    kind = typing.get_type_hints(schema).get(name)
    return [str(member.value) for member in kind] if isinstance(kind, type) and issubclass(kind, Enum) else []


def invalid_value_message(key: str, value: Any, expected: str) -> str:
    """The one line for a value no run can use: 'optimizer.lr=-1 is invalid: use a learning rate > 0, ...'."""
    return f"{key}={format_value(value)} is invalid: {expected}"


def _fraction(value: float) -> bool:
    return 0 < value < 1


@dataclass(frozen=True)
class Range:
    """One range check: the setting at `key` (when the config has it) must satisfy `valid`."""

    key: str
    valid: Callable[[Any], bool]
    expected: str  # what to use instead, said in the error


RANGES = (
    Range("optimizer.lr", lambda v: v > 0, "use a learning rate > 0, e.g. optimizer.lr=0.1"),
    Range("optimizer.batch_size", lambda v: v >= 1, "use a batch size >= 1"),
    Range("optimizer.lr_final", lambda v: v is None or 0 <= v <= 1, "use a fraction of lr in [0, 1], e.g. 0"),
    Range("model.hidden_size", lambda v: v >= 1, "use a width >= 1"),
    Range("model.decay", lambda v: v >= 0, "use a weight decay >= 0 (0 turns it off)"),
    Range("epochs", lambda v: v >= 1, "use at least 1 epoch"),
    Range("seed", lambda v: v >= 0, "use a seed >= 0 (NumPy's random generators take non-negative integers)"),
    Range("patience", lambda v: v is None or v >= 1, "use a number of epochs >= 1, or null to never stop early"),
    Range("threads", lambda v: v is None or v >= 1, "use a number of threads >= 1, or null to let each run measure"),
    Range("divergence_factor", lambda v: v > 1, "use a factor > 1, e.g. 100"),
    Range("data.val_fraction", _fraction, "use a fraction inside (0, 1)"),
    Range("data.test_fraction", _fraction, "use a fraction inside (0, 1)"),  # digits only
)
_ABSENT = object()  # a key this config's schemas do not have (data.test_fraction of mnist)


def knob_ranges(optimizer: str) -> list[Range]:
    """The range checks of an optimizer's own knobs, declared by its class (`CHECKS`)."""
    return [
        Range(f"optimizer.{knob}", valid, expected) for knob, (valid, expected) in OPTIMIZERS[optimizer].CHECKS.items()
    ]


def check_ranges(cfg: DictConfig, ranges: Iterable[Range]) -> None:
    """Raise ConfigError for the first setting outside its range."""
    for check in ranges:
        value = OmegaConf.select(cfg, check.key, default=_ABSENT)
        if value is not _ABSENT and not check.valid(value):
            raise ConfigError(invalid_value_message(check.key, value, check.expected))


def check_named_as_chosen(cfg: DictConfig, group: str) -> None:
    """A group's `name` (which reader, which optimizer) must be one its chosen option's schema serves:
    `optimizer.name=adam` on SGD's schema would train Adam without its knobs."""
    node = cfg[group]
    name, schema = str(node.name), OmegaConf.get_type(node)
    names = {option: str(loaded.get("name")) for option, loaded in group_files(group).items()}
    served = sorted({names[o] for o, s in group_options(group).items() if SCHEMAS.get(f"{group}/{s}") is schema})
    if served and name not in served:
        switch = [f"{group}={option}" for option, named in names.items() if named == name]
        expected = f"it names the {group} chosen ({' or '.join(served)})"
        expected += f"; to use {name}, choose {switch[0]}" if switch else ""
        raise ConfigError(invalid_value_message(f"{group}.name", name, expected))


def validate(cfg: DictConfig) -> None:
    """Reject values no run could use, naming the key; runs before data loading or tracking."""
    extra = unknown_keys(cfg)
    if extra:
        raise ConfigError(unknown_key_message(extra[0]))
    for group in ("data", "optimizer"):
        check_named_as_chosen(cfg, group)
    check_ranges(cfg, [*RANGES, *knob_ranges(str(cfg.optimizer.name))])
    if cfg.optimizer.get("lr_final") is not None and cfg.optimizer.get("schedule") is None:
        expected = "it needs a schedule to anneal toward it: add optimizer.schedule=cosine (or linear)"
        raise ConfigError(invalid_value_message("optimizer.lr_final", cfg.optimizer.lr_final, expected))
