"""Planning composes each distinct defaults tree once and applies value overrides with Hydra's meaning:
the result equals Hydra's own composition of every job, errors included."""

import pytest
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from src.sweep.plan import Composer, Job

JOBS = [
    ["optimizer.lr=0.05", "model.decay=0"],
    ["optimizer.lr=0.3", "model.decay=1e-4", "epochs=3"],
    ["optimizer=adam", "optimizer.beta1=0.8", "seed=2"],
    ["+sweep=decay_lr", "optimizer.lr=0.01", "model.decay=1e-5"],
    ["++epochs=4", "data=npz", "data.path=/tmp/x.npz"],
    ["+model.extra=1"],
    ["data.val_fraction=0.2", "tracking.experiment=other", "model.init=he"],
]


@pytest.fixture(scope="module")
def loaded(loader):
    """Hydra's loader and the sweep's master config."""
    return loader, loader.load_configuration("config", ["hydra.sweep.dir=/tmp/netsweep-plan-test"], RunMode.MULTIRUN)


@pytest.mark.parametrize("index,overrides", list(enumerate(JOBS)))
def test_a_job_composes_as_hydra_composes_it(loaded, index, overrides):
    config_loader, master = loaded
    ours = Composer(config_loader, master).compose(overrides, index)
    theirs = config_loader.load_sweep_config(master, list(overrides))
    assert Job(index, overrides, ours).task_config == Job(index, overrides, theirs).task_config
    for key in (
        "overrides.task",
        "overrides.hydra",
        "job.override_dirname",
        "runtime.choices",
        "job.name",
        "sweep.dir",
    ):
        assert OmegaConf.select(ours.hydra, key) == OmegaConf.select(theirs.hydra, key), key
    assert (ours.hydra.job.num, ours.hydra.job.id) == (index, f"{ours.hydra.job.name}_{index}")


def test_each_defaults_tree_is_composed_once(loaded):
    config_loader, master = loaded
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(config_loader, name)

        def load_sweep_config(self, master_config, overrides):
            calls.append(tuple(overrides))
            return config_loader.load_sweep_config(master_config, overrides)

    composer = Composer(Counting(), master)
    for index, lr in enumerate((0.01, 0.03, 0.1, 0.3) * 4):
        composer.compose([f"optimizer.lr={lr}", f"seed={index}"], index)
    for index in range(3):
        composer.compose(["optimizer=adam", f"optimizer.lr={index}"], index)
    assert calls == [(), ("optimizer=adam",)]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.l=0.1"], "Could not override 'optimizer.l'"),
        (["+epochs=3"], "Could not append to config. An item is already at 'epochs'"),
        (["model.hidden_size=abc"], "Error merging override model.hidden_size=abc"),
        (["optimizer=rmsprop"], "optimizer"),
    ],
)
def test_errors_are_hydras(loaded, overrides, message):
    config_loader, master = loaded
    with pytest.raises(Exception, match=message.replace("(", r"\(")) as caught:
        Composer(config_loader, master).compose(overrides, 0)
    with pytest.raises(Exception) as hydras:
        config_loader.load_sweep_config(master, overrides)
    assert isinstance(caught.value, type(hydras.value))  # Hydra's type, or netsweep's subclass of it (src.errors)
    if overrides != ["optimizer=rmsprop"]:
        assert isinstance(caught.value, ConfigCompositionException)
