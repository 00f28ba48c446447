"""Fixtures the unit tests share: netsweep's configs composed by Hydra, as `python -m src.run` composes them."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.config.schema import register_configs

from ..helpers import REPO


@pytest.fixture(scope="module")
def loader():
    """Hydra's config loader over conf/, initialised as `python -m src.run` initialises it."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield GlobalHydra.instance().hydra.config_loader


@pytest.fixture(scope="module")
def compose_cfg(loader):
    """compose_cfg(*overrides) -> the composed config (conf/config.yaml with those overrides)."""
    return lambda *overrides: compose("config", overrides=list(overrides))
