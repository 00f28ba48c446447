"""Command line entry: `python -m src.run [overrides]` trains one config; `python -m src.run -m ...` sweeps.

Errors the user causes (a bad override, a missing data file) print one line and exit 2; a diverged run
exits 3, an interrupted one 130. Set HYDRA_FULL_ERROR=1 to see the full traceback instead.
"""

import sys

from src.tracking import remote

if __name__ == "__main__":  # first thing: it imports mlflow and opens the store while this process goes on
    remote.start(sys.argv[1:])

import contextlib
import gc
import logging
import os
import shutil
from pathlib import Path

import hydra
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src import interrupts
from src.cli.help import help_text
from src.cli.messages import exit_with_message
from src.config.schema import CONF_DIR as SCHEMA_CONF_DIR
from src.config.schema import register_configs
from src.errors import EXIT_INTERRUPTED, ConfigError, DataError
from src.experiment.job import current_sweep_job
from src.experiment.runner import RunSummary, evaluate_in_background, run_config
from src.sweep import registry
from src.tracking import names
from src.tracking.ui import browse_lines

log = logging.getLogger("netsweep")
register_configs()
_SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for tracebacks
CONF_DIR = str(SCHEMA_CONF_DIR)  # absolute: works however src.run is invoked


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def task(cfg: DictConfig) -> float:
    """One Hydra job; returns the config's `objective` (the best validation cross-entropy unless set
    otherwise), which sweepers such as Optuna optimise.

    In a sweep, failures propagate to the launcher, which records them per config; in a single run
    they end the process here with one line (before Hydra adds its own).
    """
    hydra_config = HydraConfig.get()
    overrides, output_dir = list(hydra_config.overrides.task), Path(hydra_config.runtime.output_dir)
    if hydra_config.mode == RunMode.MULTIRUN:
        return run_config(cfg, overrides, output_dir, current_sweep_job()).objective(cfg.objective)
    try:
        _refuse_a_sweep_without_multirun(hydra_config, overrides)
        summary = run_config(cfg, overrides, output_dir)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, (ConfigError, DataError)):  # rejected before anything was recorded
            discard_if_unused(output_dir)
        if _SHOW_TRACEBACK:
            raise
        exit_with_message(exc)
    if cfg.tracking.evaluate and cfg.tracking.log_model:
        _evaluate_in_background(cfg, summary, output_dir)
    log.info(f"run {summary.run_id} finished: test accuracy {summary.test_acc:.4f}")
    if summary.figure_path is not None:
        log.info(f"Figure 1: {summary.figure_path}")
    for line in browse_lines(summary.tracking_uri, summary.experiment_id, cfg.tracking.ui_port):
        log.info(line)
    return summary.objective(cfg.objective)


def _evaluate_in_background(cfg: DictConfig, summary: RunSummary, output_dir: Path) -> None:
    """`mlflow.models.evaluate` of the finished run's model on its test images, in a process that goes on
    after this one (src/tracking/opening.py): the prompt does not wait the second or two it takes."""
    log_path = output_dir / "evaluation.log"
    try:  # the run's own split, kept by the data layer: not read again
        evaluate_in_background(summary.tracking_uri, summary.run_id, cfg, log_path)
    except OSError as exc:  # the run is recorded and finished: say so, and go on
        log.warning(f"netsweep: run {summary.run_id} finished, but its evaluation could not start: {exc}")
        return
    except KeyboardInterrupt:
        print(
            f"netsweep: interrupted before its evaluation; run {summary.run_id} finished and is recorded",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    log.info(
        f"evaluating with mlflow.models.evaluate in the background: per_class_metrics.csv and "
        f"confusion_matrix.png on the run, then its tag {names.EVALUATED} (log: {log_path})"
    )


def _refuse_a_sweep_without_multirun(hydra_config: HydraConf, overrides: list[str]) -> None:
    """A sweep's parameters (`+sweep=<name>`, `hydra.sweeper.params`) mean nothing to a single run: the user
    left out -m."""
    params = hydra_config.sweeper.get("params") or {}
    if params:
        named = [o for o in overrides if o.lstrip("+").startswith("sweep=")] or ["hydra.sweeper.params"]
        raise ConfigError(
            f"{named[0]} defines a sweep over {', '.join(params)}: run it with -m, "
            f"e.g. python -m src.run -m {' '.join(overrides)}"
        )


def discard_if_unused(output_dir: Path) -> None:
    """Remove the output folder Hydra made for a command that was rejected: it holds only Hydra's copy of
    the config and an empty log (and the folders above it, if nothing else is in them)."""
    files = [p for p in output_dir.rglob("*") if p.is_file() and ".hydra" not in p.relative_to(output_dir).parts]
    if any(p.stat().st_size for p in files):
        return
    shutil.rmtree(output_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # outputs/<date>/, then outputs/, when nothing else is in them
        output_dir.parent.rmdir()
        output_dir.parent.parent.rmdir()


def main() -> None:
    if {"--help", "-h"} & set(sys.argv[1:]):  # netsweep's own help; Hydra's stays at --hydra-help
        print(help_text(Path(CONF_DIR)), end="")
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us whole; we print them as one line
    logging.getLogger("alembic").setLevel(logging.WARNING)  # sweeper plugins import it while Hydra logs INFO
    interrupts.install()  # Ctrl-C and SIGTERM end runs KILLED, never mid-way through a tracking write
    try:
        task()
    except (Exception, KeyboardInterrupt) as exc:
        registry.finish_all(interrupted=isinstance(exc, KeyboardInterrupt))  # report what a sweep recorded
        if _SHOW_TRACEBACK:
            raise
        exit_with_message(exc)
    finally:
        remote.stop()  # a single run's writer process: everything it was asked is written when this returns


if __name__ == "__main__":
    try:
        main()
    finally:
        gc.freeze()  # the command is done: skip the interpreter's final garbage collection (~1 s with mlflow)
