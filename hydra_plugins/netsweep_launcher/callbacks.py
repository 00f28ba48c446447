"""`FinishSweeps`: ends the open netsweep sweeps when Hydra's multirun ends, for sweepers (Optuna, ...)
that run several batches and do not tell the launcher when they are done."""

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.sweep import registry


class FinishSweeps(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        registry.finish_all()
