"""`hydra.launcher.*`: the launcher's settings, their types and their defaults (this dataclass is the one
place they are set; Hydra's ConfigStore serves it as `hydra/launcher=netsweep`)."""

from dataclasses import dataclass
from typing import Any

LAUNCHER_TARGET = "hydra_plugins.netsweep_launcher.netsweep_launcher.NetsweepLauncher"


@dataclass
class LauncherSettings:
    _target_: str = LAUNCHER_TARGET
    n_jobs: int = -1  # configs trained at once; -1: one per core
    backend: str = "loky"  # loky: local worker processes | dask: a Dask cluster (see `address`)
    address: str | None = None  # dask: scheduler address tcp://HOST:PORT; none starts a local cluster
    resume: Any = True  # true: skip configs with a result (finished, diverged, pruned); false: retrain all;
    #                     except_pruned: skip finished and diverged configs, retrain the pruned ones
    progress_interval_s: float = 10.0  # seconds between "running: ..." progress lines; 0 turns them off
    mlflow: bool | None = None  # group the sweep in MLflow (netsweep's own app only); null: when it is
    prune: str = "none"  # stop losing configs early: none | median | asha (see src/pruning.py)
    prune_min_epochs: int = 1  # no config is pruned before this epoch (asha: its first rung)
    prune_factor: int = 3  # asha: rungs at min_epochs x factor^k, the top 1/factor go on
    prune_by: str = "config"  # config: the seeds of a config are judged on their mean and stop together | seed
    register_best: str | None = None  # a model name: register the winner's model under it, alias "best"
