"""Checks that types cannot express (a positive learning rate, a fraction inside (0, 1)) and keys no schema
declares, each failing with one line that names the key and what to use instead."""

import dataclasses
import difflib
import re
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config.naming import format_value
from src.config.schema import CONF_DIR, FINAL_METRICS, SCHEMAS, Config
from src.errors import ConfigError
from src.nn.optim import OPTIMIZERS


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
    candidates = list(candidates or schema_keys())
    matches = [c for c in candidates if c.rsplit(".", 1)[-1] == key and c != key]
    matches = matches or difflib.get_close_matches(key, [c for c in candidates if c != key], n=1, cutoff=0.6)
    return f" (did you mean {matches[0]}?)" if matches else ""


def group_options(group: str) -> dict[str, str]:
    """{option: schema} of a config group, from its YAML files in conf/ (`data`: mnist -> idx, ...)."""
    found = {}
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        schema = re.search(rf"/schema/{group}/(\w+)@", path.read_text())
        if schema:
            found[path.stem] = schema.group(1)
    return found


def unknown_key_message(key: str) -> str:
    """What to say of a key the composed config does not have: a key of another option of its group, a group
    that needs `+`, or a near miss."""
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
    for key in node:
        if key == "hydra":
            continue
        if declared is not None and key not in declared:
            found.append(f"{prefix}{key}")
        elif not OmegaConf.is_missing(node, key) and OmegaConf.is_dict(node[key]):
            found.extend(unknown_keys(node[key], f"{prefix}{key}."))
    return found


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={format_value(value)} is invalid: {expected}")


def validate(cfg: DictConfig) -> None:
    """Reject values no run could use, naming the key; runs before data loading or tracking."""
    extra = unknown_keys(cfg)
    if extra:
        raise ConfigError(unknown_key_message(extra[0]))
    opt, model, data = cfg.optimizer, cfg.model, cfg.data
    _require(opt.name in OPTIMIZERS, "optimizer.name", opt.name, f"use one of {', '.join(OPTIMIZERS)}")
    _require(opt.lr > 0, "optimizer.lr", opt.lr, "use a learning rate > 0, e.g. optimizer.lr=0.1")
    _require(opt.batch_size >= 1, "optimizer.batch_size", opt.batch_size, "use a batch size >= 1")
    _require(model.hidden_size >= 1, "model.hidden_size", model.hidden_size, "use a width >= 1")
    _require(model.decay >= 0, "model.decay", model.decay, "use a weight decay >= 0 (0 turns it off)")
    _require(cfg.epochs >= 1, "epochs", cfg.epochs, "use at least 1 epoch")
    _require(
        cfg.patience is None or cfg.patience >= 1,
        "patience",
        cfg.patience,
        "use a number of epochs >= 1, or null to never stop early",
    )
    _require(
        cfg.threads is None or cfg.threads >= 1,
        "threads",
        cfg.threads,
        "use a number of threads >= 1, or null to let each run measure",
    )
    _require(cfg.divergence_factor > 1, "divergence_factor", cfg.divergence_factor, "use a factor > 1, e.g. 100")
    _require(0 < data.val_fraction < 1, "data.val_fraction", data.val_fraction, "use a fraction inside (0, 1)")
    _require(cfg.objective in FINAL_METRICS, "objective", cfg.objective, f"use one of {', '.join(FINAL_METRICS)}")
    if "test_fraction" in data:
        _require(0 < data.test_fraction < 1, "data.test_fraction", data.test_fraction, "use a fraction inside (0, 1)")
    for knob, (valid, expected) in OPTIMIZERS[opt.name].CHECKS.items():
        _require(valid(opt[knob]), f"optimizer.{knob}", opt[knob], expected)
