"""The Hydra side of the sweep runner: its config schema and the Launcher Hydra calls.

Selected by default in conf/config.yaml (`override hydra/launcher: netsweep`), so every `-m` sweep, from
a plain grid to a sweeper plugin such as Optuna, runs through `src.sweep.SweepRunner`.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class NetsweepLauncherConf:
    _target_: str = "hydra_plugins.netsweep_launcher.netsweep_launcher.NetsweepLauncher"
    n_jobs: int = -1  # configs trained at once; -1: one per core
    backend: str = "loky"  # loky: local process pool | dask: a Dask cluster (see `address`)
    address: Optional[str] = None  # dask: scheduler address tcp://HOST:PORT; none starts a local cluster
    resume: bool = True  # skip configs already finished or diverged in the experiment; false reruns all
    progress_interval_s: float = 10.0  # seconds between "running: ..." progress lines; 0 turns them off


ConfigStore.instance().store(group="hydra/launcher", name="netsweep", node=NetsweepLauncherConf, provider="netsweep")


class NetsweepLauncher(Launcher):
    def __init__(self, **settings) -> None:
        from src.sweep import LauncherSettings

        self.settings = LauncherSettings(**settings)
        self.runner = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from src.sweep import SweepRunner

        self.runner = SweepRunner(hydra_context, task_function, config, self.settings)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.runner.launch(job_overrides, initial_job_idx)
