"""`hydra.launcher.*`: the launcher's settings, their types and their defaults (this dataclass is the one
place they are set; Hydra's ConfigStore serves it as `hydra/launcher=netsweep`)."""

from dataclasses import dataclass
from typing import Optional

LAUNCHER_TARGET = "hydra_plugins.netsweep_launcher.netsweep_launcher.NetsweepLauncher"


@dataclass
class LauncherSettings:
    _target_: str = LAUNCHER_TARGET
    n_jobs: int = -1  # configs trained at once; -1: one per core
    backend: str = "loky"  # loky: local worker processes | dask: a Dask cluster (see `address`)
    address: Optional[str] = None  # dask: scheduler address tcp://HOST:PORT; none starts a local cluster
    resume: bool = True  # skip configs that already have a result in the experiment; false retrains all
    progress_interval_s: float = 10.0  # seconds between "running: ..." progress lines; 0 turns them off
    mlflow: Optional[bool] = None  # group the sweep in MLflow; null: when the app is netsweep's own
