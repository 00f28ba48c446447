"""Command line entry: `python -m src.run [overrides]` trains one config; `python -m src.run -m ...` sweeps.

Errors the user causes (a bad override, a missing data file) print one line and exit 2; a diverged run
exits 3, an interrupted one 130. Set HYDRA_FULL_ERROR=1 to see the full traceback instead.
"""

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src import interrupts
from src.config import register_configs
from src.errors import exit_with_message
from src.experiment import run_config

log = logging.getLogger("netsweep")
register_configs()
_SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for tracebacks
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works however src.run is invoked


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def task(cfg: DictConfig) -> float:
    """One Hydra job; returns the best validation loss, the objective sweepers such as Optuna minimise.

    In a sweep, failures propagate to the launcher, which records them per config; in a single run
    they end the process here with one line (before Hydra adds its own).
    """
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run_config(cfg).best_val_loss
    try:
        summary = run_config(cfg)
    except (Exception, KeyboardInterrupt) as exc:
        if _SHOW_TRACEBACK:
            raise
        exit_with_message(exc)
    log.info(f"run {summary.run_id} finished: test accuracy {summary.test_acc:.4f}")
    if summary.figure_path is not None:
        log.info(f"Figure 1: {summary.figure_path}")
    log.info(f"browse it: mlflow ui --backend-store-uri {summary.tracking_uri}")
    return summary.best_val_loss


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us whole; we print them as one line
    interrupts.install()  # Ctrl-C and SIGTERM end runs KILLED, never mid-way through a tracking write
    try:
        task()
    except (Exception, KeyboardInterrupt) as exc:
        if _SHOW_TRACEBACK:
            raise
        exit_with_message(exc)


if __name__ == "__main__":
    main()
