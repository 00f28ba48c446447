"""Every config group composes; typos, wrong types and out-of-range values are rejected by name."""

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from src.config import ConfigError, config_hash, format_number, register_configs, run_name, validate

from .conftest import REPO

DATA = ["digits", "mnist", "fashion_mnist", "npz"]
OPTIMIZERS = ["sgd", "momentum", "adam"]


@pytest.fixture(scope="module")
def composer():
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides))


@pytest.mark.parametrize("data,optimizer", list(itertools.product(DATA, OPTIMIZERS)))
def test_every_group_combination_composes_and_validates(composer, data, optimizer):
    overrides = [f"data={data}", f"optimizer={optimizer}", "model.dtype=float64"]
    if data == "npz":
        overrides.append("data.path=/tmp/x.npz")
    cfg = composer(*overrides)
    validate(cfg)
    assert cfg.data.name == data and cfg.optimizer.name == optimizer
    assert cfg.data.val_fraction == 0.15
    assert OmegaConf.select(cfg, "model.hidden_size") == 256


def test_defaults_are_the_assignment(composer):
    cfg = composer()
    assert (cfg.data.name, cfg.model.hidden_size, cfg.model.decay) == ("digits", 256, 1e-4)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.batch_size) == ("sgd", 0.1, 32)
    assert (cfg.epochs, cfg.model.dtype.value, cfg.model.init.value) == (30, "float32", "assignment")
    assert cfg.data.val_fraction == 0.15
    assert cfg.tracking.uri is None


@pytest.mark.parametrize(
    "override", ["model.hiden_size=3", "model.hidden_size=abc", "model.dtype=float16", "optimizer.momentum=0.5"]
)
def test_typos_and_wrong_types_are_rejected_at_composition(composer, override):
    with pytest.raises(ConfigCompositionException):
        composer(override)


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("optimizer.batch_size=0", "optimizer.batch_size"),
        ("model.hidden_size=0", "model.hidden_size"),
        ("model.decay=-1e-4", "model.decay"),
        ("epochs=0", "epochs"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("data.val_fraction=0", "data.val_fraction"),
        ("+model.widht=3", "model.widht"),
        ("+lr=3", "'lr'"),
    ],
)
def test_out_of_range_values_and_added_keys_are_named(composer, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(composer(override))


def test_config_hash_ignores_tracking_but_not_settings(composer):
    base = config_hash(composer())
    assert config_hash(composer("tracking.experiment=other", "tracking.run_name=x")) == base
    assert config_hash(composer("model.decay=1e-3")) != base
    assert config_hash(composer("seed=1")) != base
    assert config_hash(composer()) == base


def test_run_names_are_readable(composer):
    assert run_name(composer()) == "lr=0.1 decay=1e-4 h=256"
    assert run_name(composer("optimizer=adam", "seed=2")) == "lr=0.001 decay=1e-4 h=256 adam seed=2"
    assert [format_number(x) for x in (0, 1e-5, 0.03, 1e4)] == ["0", "1e-5", "0.03", "1e4"]
    assert run_name(composer("epochs=2"), ["epochs=2", "optimizer.lr=0.1", "+sweep=seeds", "tracking.run_id=x"]) == (
        "lr=0.1 decay=1e-4 h=256 epochs=2"
    )
