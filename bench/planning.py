"""The parent's cost of planning a sweep, per config, measured in process: netsweep's composition (each
defaults tree composed once, value overrides applied to copies) and checks, against Hydra composing every
config in full (what Hydra's basic sweeper and the old plan each did)."""

import time
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from hydra_plugins.netsweep_launcher.netsweep_sweeper import grid
from src.config.schema import register_configs
from src.sweep.apps import NetsweepApp
from src.sweep.plan import Composer, Job
from src.sweep.settings import LauncherSettings

CONF = Path(__file__).resolve().parents[1] / "conf"


def planning_ms_per_config(n_configs: int = 32) -> tuple[float, float, float]:
    """(netsweep's ms per config, of which the one Hydra composition of the grid's defaults tree spread over
    the configs, Hydra's full composition's ms per config) for the decay_lr grid x seeds."""
    register_configs()
    arguments = ["+sweep=decay_lr", f"seed={','.join(str(s) for s in range(max(1, n_configs // 16)))}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().hydra.config_loader
        master = loader.load_configuration("config", arguments, RunMode.MULTIRUN)
        params = [f"{key}={values}" for key, values in master.hydra.sweeper.params.items()]
        jobs = grid(OverridesParser.create(config_loader=loader).parse_overrides([*params, *arguments]))
        started = time.perf_counter()
        composer = Composer(loader, master)
        composer.compose(jobs[0], 0)  # the first job composes the defaults tree every job shares
        template = time.perf_counter() - started
        planned = [Job(i, overrides, composer.compose(overrides, i)) for i, overrides in enumerate(jobs)]
        NetsweepApp(master, LauncherSettings()).plan(planned)
        ours = (time.perf_counter() - started) / len(jobs)
        started = time.perf_counter()
        for overrides in jobs:
            loader.load_sweep_config(master, list(overrides))
        hydras = (time.perf_counter() - started) / len(jobs)
    return ours * 1000, template / len(jobs) * 1000, hydras * 1000
