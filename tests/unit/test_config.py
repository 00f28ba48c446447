"""Every config group composes; typos, wrong types and out-of-range values are rejected by name; the hash,
names and number formatting."""

import itertools
import pickle
import re

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from src.config.checks import (
    RANGES,
    choices,
    did_you_mean,
    group_files,
    group_options,
    schema_keys,
    unknown_key_message,
    validate,
)
from src.config.identity import config_hash, flatten, group_hash, to_plain
from src.config.naming import format_number, format_override, format_value, run_name, swept_keys, swept_name
from src.config.schema import Config, DataName, FinalMetric, ModelConfig, OptimizerName
from src.errors import ConfigError
from src.nn.optim import OPTIMIZERS

from ..helpers import REPO

DATA = ["digits", "mnist", "fashion_mnist", "npz"]


@pytest.fixture(scope="module")
def composer(compose_cfg):
    return compose_cfg


@pytest.mark.parametrize("data,optimizer", list(itertools.product(DATA, OPTIMIZERS)))
def test_every_group_combination_composes_validates_and_pickles(composer, data, optimizer):
    overrides = [f"data={data}", f"optimizer={optimizer}", "model.dtype=float64"]
    if data == "npz":
        overrides.append("data.path=/tmp/x.npz")
    cfg = composer(*overrides)
    validate(cfg)
    assert cfg.data.name == data and cfg.optimizer.name == optimizer
    assert cfg.data.val_fraction == 0.15
    assert OmegaConf.select(cfg, "model.hidden_size") == 256
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # sweep jobs travel to workers pickled


def test_defaults_are_the_assignment(composer):
    cfg = composer()
    assert (cfg.data.name, cfg.model.hidden_size, cfg.model.decay) == ("digits", 256, 1e-4)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.batch_size) == ("sgd", 0.1, 32)
    assert (cfg.epochs, cfg.model.dtype.value, cfg.model.init.value) == (30, "float32", "assignment")
    assert cfg.data.val_fraction == 0.15
    assert cfg.tracking.uri is None


def test_every_yaml_key_is_commented():
    for path in (REPO / "conf").rglob("*.yaml"):
        for line in path.read_text().splitlines():
            if line and not line.startswith((" ", "#", "-", "defaults", "hydra")) and ":" in line:
                assert "#" in line, f"{path.name}: {line!r} has no comment"


@pytest.mark.parametrize(
    "override",
    [
        "model.hiden_size=3",
        "model.hidden_size=abc",
        "model.dtype=float16",
        "model.init=bad",
        "optimizer.schedule=cos",
        "optimizer.momentum=0.5",
        "optimizer.name=rmsprop",
        "data.name=cifar",
        "objective=accuracy",
    ],
)
def test_typos_and_wrong_types_are_rejected_at_composition(composer, override):
    with pytest.raises(ConfigCompositionException):
        composer(override)


def test_schema_nodes_are_not_group_options(composer):
    for override in ("data=digits_schema", "optimizer=sgd_schema", "data=schema"):
        with pytest.raises(MissingConfigException):
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
        ("seed=-1", "seed=-1 is invalid: use a seed >= 0"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("data.val_fraction=0", "data.val_fraction"),
        ("data.test_fraction=1", "data.test_fraction"),
        ("patience=0", "patience"),
        ("threads=0", "threads"),
        ("divergence_factor=1", "divergence_factor"),
        ("optimizer.lr_final=0.1", "optimizer.lr_final=0.1 is invalid: it needs a schedule"),
        ("optimizer.lr_final=1.5", "optimizer.lr_final"),
        ("+model.widht=3", "model.widht"),
        ("+lr=3", "'lr'"),
    ],
)
def test_out_of_range_values_and_added_keys_are_named(composer, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(composer(override))


@pytest.mark.parametrize(
    "optimizer,override,key",
    [
        ("momentum", "optimizer.momentum=1.0", "optimizer.momentum"),
        ("adam", "optimizer.beta2=1.5", "optimizer.beta2"),
        ("adam", "optimizer.eps=0", "optimizer.eps"),
    ],
)
def test_an_optimizers_own_knobs_are_checked_by_its_class(composer, optimizer, override, key):
    with pytest.raises(ConfigError, match=key):
        validate(composer(f"optimizer={optimizer}", override))


def test_every_range_check_names_its_key_its_value_and_what_to_use(composer):
    checked = {check.key for check in RANGES}
    assert {"optimizer.lr", "epochs", "data.val_fraction", "data.test_fraction"} <= checked
    assert checked <= set(schema_keys())  # no check of a key that no schema declares
    with pytest.raises(ConfigError) as caught:
        validate(composer("optimizer.lr=-0.5"))
    assert str(caught.value) == "optimizer.lr=-0.5 is invalid: use a learning rate > 0, e.g. optimizer.lr=0.1"
    validate(composer("data=mnist"))  # test_fraction is digits' own: not checked where it does not exist
    validate(composer("patience=3", "threads=null"))


def test_settings_with_fixed_values_are_enums_that_read_as_their_values(composer):
    cfg = composer("optimizer=adam", "objective=best_val_acc")
    assert (cfg.optimizer.name, cfg.objective) == (OptimizerName.adam, FinalMetric.best_val_acc)
    assert f"{cfg.objective}" == str(cfg.objective) == "best_val_acc" and cfg.objective == "best_val_acc"
    assert isinstance(cfg.data.name, DataName) and str(cfg.data.name) == "digits"
    assert to_plain(cfg)["optimizer"]["name"] == "adam"  # records and the config hash see the plain name
    assert choices(ModelConfig, "init") == ["assignment", "he", "glorot"] and choices(ModelConfig, "decay") == []
    assert choices(Config, "objective")[-1] == "best_val_ce"


def test_the_enums_list_exactly_the_optimizers_and_data_readers():
    assert list(OptimizerName.__members__) == list(OPTIMIZERS)
    assert set(DataName.__members__) == {str(option.name) for option in group_files("data").values()}


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.name=adam"], "optimizer.name=adam is invalid: it names the optimizer chosen (sgd); "),
        (["optimizer=momentum", "optimizer.name=sgd"], "to use sgd, choose optimizer=sgd"),
        (["data.name=mnist"], "data.name=mnist is invalid: it names the data chosen (digits); "),
        (["data=mnist", "data.name=fashion_mnist"], None),  # one reader, one schema: both IDX sources
    ],
)
def test_a_groups_name_must_be_one_its_chosen_schema_serves(composer, overrides, message):
    if message is None:
        validate(composer(*overrides))
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(composer(*overrides))


def test_typos_get_a_suggestion_and_never_plus_advice(composer):
    with pytest.raises(ConfigError) as caught:
        validate(composer("+model.widht=3"))
    assert "did you mean model" in str(caught.value) and "+" not in str(caught.value)
    assert did_you_mean("optimizer.l") == " (did you mean optimizer.lr?)"
    assert did_you_mean("optimizer.momentun") == " (did you mean optimizer.momentum?)"
    assert did_you_mean("zzz.qqq") == ""
    assert did_you_mean("lr") == " (did you mean optimizer.lr?)"  # a key without its group
    assert {"optimizer.beta1", "data.root", "data.path", "epochs", "tracking.experiment"} <= set(schema_keys())


def test_hydras_own_settings_get_a_suggestion_from_their_siblings():
    launcher = ["n_jobs", "backend", "resume", "progress_interval_s", "slurm"]
    assert unknown_key_message("hydra.launcher.resum", launcher) == (
        "unknown Hydra setting 'hydra.launcher.resum' (did you mean hydra.launcher.resume?): check its spelling "
        "(python -m src.run --cfg hydra lists them)"
    )
    assert "did you mean" not in unknown_key_message("hydra.launcher.zzz", launcher)  # no far-fetched guess
    assert "did you mean" not in unknown_key_message("hydra.launcher.n_job", [])  # never one of netsweep's keys


def test_configs_are_named_by_the_keys_their_sweep_varies():
    master = OmegaConf.create(
        {
            "hydra": {
                "overrides": {"task": ["optimizer.lr=0.1,0.3", "epochs=3", "model.decay=interval(0, 1e-3)"]},
                "sweeper": {"params": {"seed": "0,1,2", "optimizer.lr": "0.1,0.3"}},
            }
        }
    )
    assert swept_keys(master) == ["optimizer.lr", "model.decay", "seed"]
    assert swept_keys(OmegaConf.create({"hydra": {"overrides": {"task": ["epochs=3"]}}})) == []
    job = ["optimizer.lr=0.30000000000000004", "model.decay=0.0001", "epochs=3", "seed=2", "optimizer=adam"]
    assert swept_name(job, ["optimizer.lr", "model.decay", "seed", "optimizer"]) == "lr=0.3 decay=1e-4 seed=2 adam"
    assert swept_name(job, ["model.hidden_size"]) == ""


def test_a_key_of_another_option_names_the_option_and_a_group_that_is_added_says_so():
    assert unknown_key_message("optimizer.momentum").startswith(
        "optimizer.momentum is not a key of the optimizer you chose: it belongs to optimizer=momentum; choose one"
    )
    assert "it belongs to data=fashion_mnist, data=mnist;" in unknown_key_message("data.root")
    assert unknown_key_message("sweep") == (
        "sweep is a config group that is added: write +sweep=<name> (a sweep runs with -m)"
    )
    assert group_options("optimizer") == {"adam": "adam", "momentum": "momentum", "sgd": "sgd"}


def test_config_hash_ignores_tracking_but_not_settings(composer):
    base = config_hash(composer())
    assert config_hash(composer("tracking.experiment=other", "tracking.run_name=x")) == base
    assert config_hash(composer("model.decay=1e-3")) != base
    assert config_hash(composer("seed=1")) != base
    assert config_hash(composer()) == base
    # a setting added later at null (the learning-rate schedule) keeps the hash of configs recorded before it
    cosine = config_hash(composer("optimizer.schedule=cosine"))
    assert config_hash(composer("optimizer.schedule=null")) == base != cosine
    assert group_hash(composer("seed=1")) == group_hash(composer()) != group_hash(composer("model.decay=1e-3"))


def test_numbers_are_written_one_way_everywhere():
    cases = [
        (0, "0"),
        (0.0, "0"),
        (1e-4, "1e-4"),
        (0.001, "1e-3"),
        (0.03, "0.03"),
        (0.1, "0.1"),
        (1.0, "1"),
        (256, "256"),
        (1e4, "1e4"),
        (3.3e-05, "3.3e-5"),
        (0.123456789, "0.123456789"),
        (100.0, "100"),
    ]
    assert [(value, format_number(value)) for value, _ in cases] == cases
    assert [format_value(v) for v in ("0.0001", "1.0", "True", "None", "adam", True)] == [
        "1e-4",
        "1",
        "true",
        "null",
        "adam",
        "true",
    ]
    assert float(format_number(0.123456789)) == 0.123456789  # exact enough to reproduce
    assert format_number(16384) == "16384" and format_value("33825") == "33825"  # ints read back as ints
    assert format_override("model.hidden_size=16384") == "model.hidden_size=16384"
    assert format_override("optimizer.lr=1.0") == "optimizer.lr=1"
    assert format_override("+model.decay=0.0001") == "+model.decay=1e-4"
    assert format_override("optimizer.lr=0.1,0.3") == "optimizer.lr=0.1,0.3"


def test_run_names_say_what_was_overridden(composer):
    assert run_name(composer()) == "lr=0.1 decay=1e-4 h=256"
    cfg = composer("optimizer=adam", "seed=2")
    assert run_name(cfg, ["optimizer=adam", "seed=2"]) == "lr=1e-3 decay=1e-4 h=256 adam seed=2"
    assert run_name(composer("epochs=2"), ["epochs=2", "optimizer.lr=0.1", "+sweep=seeds", "tracking.run_id=x"]) == (
        "lr=0.1 decay=1e-4 h=256 epochs=2"
    )
    assert run_name(composer("optimizer.batch_size=64"), ["optimizer.batch_size=64"]) == "lr=0.1 decay=1e-4 h=256 bs=64"
    assert run_name(composer("tracking.run_name=mine")) == "mine"


def test_flatten_gives_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
