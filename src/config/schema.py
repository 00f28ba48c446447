"""The typed schema behind every YAML file in conf/, registered in Hydra's ConfigStore.

The schemas declare keys and types only; every value (and its comment) lives in the YAML files, the one
place defaults are set. Hydra merges each YAML onto its schema, so an unknown key, a value of the wrong
type or a setting outside its fixed set of values (an Enum below) is rejected while the config is composed.
Schema nodes are stored under `schema/`, where no command line can select them as an option of a group.
"""

from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from src.nn.optim import OPTIMIZERS, knobs


class Choice(str, Enum):
    """A setting with a fixed set of values, each member named as its value; it reads as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class DType(Choice):
    float32 = "float32"
    float64 = "float64"


class Init(Choice):
    assignment = "assignment"  # W1 ~ N(0, 2/(d+H)), W2 ~ N(0, 4/(H+k)), zero biases
    he = "he"  # W ~ N(0, 2/fan_in), zero biases
    glorot = "glorot"  # W ~ N(0, 2/(fan_in+fan_out)), zero biases


class DataName(Choice):
    """The readers of src/data/sources.py."""

    digits = "digits"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    npz = "npz"


class OptimizerName(Choice):
    """The optimizers of src.nn.optim.OPTIMIZERS (`optimizer_schema` refuses one missing here)."""

    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"


class Schedule(Choice):
    """How a learning rate changes over the epochs (src/nn/schedule.py); null in a config: it stays."""

    cosine = "cosine"
    linear = "linear"


class FinalMetric(Choice):
    """What a run's kept parameters are scored on when it ends: the values `objective` may name. best_val_ce is
    the validation cross-entropy without the decay penalty, so configs with different decays compare fairly."""

    test_acc = "test_acc"
    test_loss = "test_loss"
    insample_acc = "insample_acc"
    insample_loss = "insample_loss"
    best_epoch = "best_epoch"
    best_val_loss = "best_val_loss"
    best_val_acc = "best_val_acc"
    best_val_ce = "best_val_ce"


FINAL_METRICS = tuple(metric.value for metric in FinalMetric)  # in the order a run computes them


@dataclass
class DataConfig:
    name: DataName = MISSING
    val_fraction: float = MISSING


@dataclass
class DigitsConfig(DataConfig):
    test_fraction: float = MISSING


@dataclass
class IdxConfig(DataConfig):
    root: str = MISSING
    download: bool = MISSING
    cache_dir: str = MISSING


@dataclass
class NpzConfig(DataConfig):
    path: str = MISSING


@dataclass
class ModelConfig:
    hidden_size: int = MISSING
    decay: float = MISSING
    init: Init = MISSING
    dtype: DType = MISSING


@dataclass
class OptimizerConfig:
    """Every optimizer has a name, a learning rate and a batch size; its own knobs are its extra fields,
    which are passed to its class in `src.nn.optim.OPTIMIZERS` by name."""

    name: OptimizerName = MISSING
    lr: float = MISSING
    batch_size: int = MISSING
    schedule: Schedule | None = None  # null (off) by default, so configs recorded before it keep their hash
    lr_final: float | None = None  # with a schedule: the fraction of lr it anneals toward (null: 0)


def optimizer_schema(name: str) -> type[OptimizerConfig]:
    """The schema of optimizer `name`: the shared keys plus its class's own knobs, typed as declared."""
    if name not in OptimizerName.__members__:
        raise TypeError(f"optimizer {name!r} of src.nn.optim.OPTIMIZERS is missing from OptimizerName")
    fields = [(key, kind, field(default=MISSING)) for key, kind in knobs(name).items()]
    schema = make_dataclass(f"{name.capitalize()}Config", fields, bases=(OptimizerConfig,))
    schema.__module__ = __name__  # importable by name (below), so configs holding it pickle
    return schema


OPTIMIZER_SCHEMAS = {name: optimizer_schema(name) for name in OPTIMIZERS}
globals().update({schema.__name__: schema for schema in OPTIMIZER_SCHEMAS.values()})


@dataclass
class TrackingConfig:
    experiment: str = MISSING
    uri: str | None = None
    run_name: str | None = None
    run_id: str | None = None
    log_weights: bool = MISSING
    log_model: bool = MISSING
    evaluate: bool = MISSING
    checkpoint_dir: str | None = None
    ui_port: int = MISSING


@dataclass
class Config:
    data: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Any = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    epochs: int = MISSING
    seed: int = MISSING
    divergence_factor: float = MISSING
    objective: FinalMetric = MISSING
    patience: int | None = None
    threads: int | None = None
    arrays: str | None = None  # the array library training runs on: numpy (None) | torch | cupy | array_api_strict
    device: str | None = None  # where: cpu, cuda, cuda:1 (None: the library's default; numpy runs on the CPU)


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the YAML defaults that use these schemas

SCHEMAS = {
    "data/digits": DigitsConfig,
    "data/idx": IdxConfig,
    "data/npz": NpzConfig,
    "model/mlp": ModelConfig,
    "tracking/mlflow": TrackingConfig,
    **{f"optimizer/{name}": schema for name, schema in OPTIMIZER_SCHEMAS.items()},
}


def register_configs() -> None:
    """Register the schemas, so the YAML files in conf/ can name them (`/schema/optimizer/sgd@_here_`)."""
    store = ConfigStore.instance()
    store.store(name="netsweep_config", node=Config)
    for path, node in SCHEMAS.items():
        group, name = path.split("/")
        store.store(group=f"schema/{group}", name=name, node=node)
