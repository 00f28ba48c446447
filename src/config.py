"""Config schemas, their registration in Hydra's ConfigStore, value checks and the config hash.

The dataclasses below are the schema behind every YAML file in `conf/`: Hydra merges each YAML onto its
schema, so an unknown key or a value of the wrong type is rejected while the config is composed. Checks
that types cannot express (a positive learning rate, a fraction inside (0, 1)) live in `validate`, which
runs before any data is read or any run is created.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value the user set is out of range; the message names the key and what to do."""


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


class Init(str, Enum):
    assignment = "assignment"  # W1 ~ N(0, 2/(d+H)), W2 ~ N(0, 4/(H+k)), zero biases
    he = "he"  # W ~ N(0, 2/fan_in), zero biases
    glorot = "glorot"  # W ~ N(0, 2/(fan_in+fan_out)), zero biases


@dataclass
class DataConfig:
    name: str = MISSING
    val_fraction: float = 0.15


@dataclass
class DigitsConfig(DataConfig):
    name: str = "digits"
    test_fraction: float = 0.2


@dataclass
class IdxConfig(DataConfig):
    name: str = MISSING
    root: str = MISSING
    download: bool = False
    cache_dir: str = "~/.cache/netsweep"


@dataclass
class NpzConfig(DataConfig):
    name: str = "npz"
    path: str = MISSING


@dataclass
class ModelConfig:
    hidden_size: int = 256
    decay: float = 1e-4
    init: Init = Init.assignment
    dtype: DType = DType.float32


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 0.1
    batch_size: int = 32


@dataclass
class SgdConfig(OptimizerConfig):
    name: str = "sgd"


@dataclass
class MomentumConfig(OptimizerConfig):
    name: str = "momentum"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class TrackingConfig:
    experiment: str = "netsweep"
    uri: Optional[str] = None
    run_name: Optional[str] = None
    run_id: Optional[str] = None
    log_weights: bool = True


@dataclass
class Config:
    data: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Any = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    epochs: int = 30
    seed: int = 0
    divergence_factor: float = 100.0


def register_configs() -> None:
    """Register the schemas so the YAML files in conf/ can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="netsweep_config", node=Config)
    cs.store(group="data", name="digits_schema", node=DigitsConfig)
    cs.store(group="data", name="idx_schema", node=IdxConfig)
    cs.store(group="data", name="npz_schema", node=NpzConfig)
    cs.store(group="model", name="mlp_schema", node=ModelConfig)
    cs.store(group="optimizer", name="sgd_schema", node=SgdConfig)
    cs.store(group="optimizer", name="momentum_schema", node=MomentumConfig)
    cs.store(group="optimizer", name="adam_schema", node=AdamConfig)
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {expected}")


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
        elif OmegaConf.is_dict(node._get_node(key)):
            found.extend(unknown_keys(node[key], f"{prefix}{key}."))
    return found


def validate(cfg: DictConfig) -> None:
    """Reject values no run could use, naming the key; runs before data loading or tracking."""
    extra = unknown_keys(cfg)
    if extra:
        raise ConfigError(f"unknown config key {extra[0]!r}: check its spelling (python -m src.run --cfg job lists every key)")
    opt, model, data = cfg.optimizer, cfg.model, cfg.data
    _require(opt.lr > 0, "optimizer.lr", opt.lr, "use a learning rate > 0, e.g. optimizer.lr=0.1")
    _require(opt.batch_size >= 1, "optimizer.batch_size", opt.batch_size, "use a batch size >= 1")
    _require(model.hidden_size >= 1, "model.hidden_size", model.hidden_size, "use a width >= 1")
    _require(model.decay >= 0, "model.decay", model.decay, "use a weight decay >= 0 (0 turns it off)")
    _require(cfg.epochs >= 1, "epochs", cfg.epochs, "use at least 1 epoch")
    _require(
        cfg.divergence_factor > 1, "divergence_factor", cfg.divergence_factor, "use a factor > 1, e.g. 100"
    )
    _require(
        0 < data.val_fraction < 1, "data.val_fraction", data.val_fraction, "use a fraction inside (0, 1)"
    )
    if "test_fraction" in data:
        _require(
            0 < data.test_fraction < 1, "data.test_fraction", data.test_fraction, "use a fraction inside (0, 1)"
        )
    if opt.name == "momentum":
        _require(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "use a value in [0, 1)")
    if opt.name == "adam":
        for key in ("beta1", "beta2"):
            _require(0 <= opt[key] < 1, f"optimizer.{key}", opt[key], "use a value in [0, 1)")
        _require(opt.eps > 0, "optimizer.eps", opt.eps, "use an epsilon > 0, e.g. 1e-8")


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python values (enums as their names)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys users write as overrides."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def experiment_settings(cfg: DictConfig) -> dict:
    """What determines a run's results: the resolved config minus tracking (and Hydra's own) settings."""
    plain = to_plain(cfg)
    plain.pop("tracking", None)
    plain.pop("hydra", None)
    return plain


def config_hash(cfg: DictConfig) -> str:
    """A stable hash of `experiment_settings`, so a sweep can recognise a config it already ran."""
    canonical = json.dumps(experiment_settings(cfg), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def format_number(value: float) -> str:
    """Short, readable numbers for run names: 0.1 -> '0.1', 0.0001 -> '1e-4', 0 -> '0'."""
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


NAMED_KEYS = ("optimizer.lr", "model.decay", "model.hidden_size", "optimizer.batch_size", "optimizer", "seed")


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """A readable name such as 'lr=0.1 decay=1e-4 h=256', plus what differs from the usual setting and
    any other override (so configs of a sweep over, say, epochs get different names)."""
    if cfg.tracking.run_name:
        return str(cfg.tracking.run_name)
    parts = [
        f"lr={format_number(cfg.optimizer.lr)}",
        f"decay={format_number(cfg.model.decay)}",
        f"h={cfg.model.hidden_size}",
    ]
    if cfg.optimizer.batch_size != 32:
        parts.append(f"bs={cfg.optimizer.batch_size}")
    if cfg.optimizer.name != "sgd":
        parts.append(cfg.optimizer.name)
    if cfg.seed != 0:
        parts.append(f"seed={cfg.seed}")
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "=" in override and key not in NAMED_KEYS and not key.startswith(("hydra.", "tracking.", "sweep")):
            parts.append(override.lstrip("+~"))
    return " ".join(parts)
