"""The Hydra launcher: a thin `Launcher` over `src.sweep.runner.SweepRunner`.

Selected by default in conf/config.yaml (`override hydra/launcher: netsweep`), so every `-m` sweep, from
a plain grid to a sweeper plugin such as Optuna, runs through it; any other Hydra app can select it too.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from src.sweep import registry
from src.sweep.settings import LauncherSettings

if TYPE_CHECKING:
    from src.sweep.runner import SweepRunner

ConfigStore.instance().store(group="hydra/launcher", name="netsweep", node=LauncherSettings, provider="netsweep")


class NetsweepLauncher(Launcher):
    """Runs each batch Hydra's sweeper hands it as part of one sweep. Unlike Hydra's own launchers it
    composes and checks every job's config itself, can be told how many jobs the whole sweep has
    (`expect`), and is told when the sweep is over (`finish`): netsweep's sweeper checks for this class."""

    def __init__(self, **settings: Any) -> None:
        self.given = settings  # checked in `setup`, where a ConfigError reaches the CLI as it is raised
        self.runner: SweepRunner | None = None
        self.expected: int | None = None
        self.sweep_dir: Path | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Hydra imports every installed plugin when it starts; the sweep core (joblib, the tracking layer)
        # is only needed once a sweep runs, so it is imported here, as Hydra's own launchers do.
        from src.sweep.runner import SweepRunner  # deferred: see above

        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        settings = LauncherSettings(**self.given)  # every setting checked here, once
        self.runner = SweepRunner(hydra_context, task_function, config, settings)
        if self.expected is not None:
            self.runner.expect(self.expected)
        registry.register(self)

    def expect(self, total: int) -> None:
        """The sweeper announces how many jobs the whole sweep has (for progress, and to end it after them)."""
        self.expected = total
        if self.runner is not None:
            self.runner.expect(total)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if self.runner is None:
            raise RuntimeError("Hydra calls `setup` before `launch`")
        try:
            return self.runner.launch(job_overrides, initial_job_idx)
        except BaseException:  # a config rejected before any job ran leaves no folder behind
            discard_if_unused(self.sweep_dir)
            raise

    def finish(self, interrupted: bool = False) -> None:
        """End the sweep: the report, the parent run's outcome, the summary (once)."""
        if self.runner is not None:
            self.runner.finish(interrupted)
        discard_if_unused(self.sweep_dir)


def discard_if_unused(sweep_dir: Path | None) -> None:
    """Remove a sweep's folder that holds nothing but the sweeper's `multirun.yaml` (a sweep rejected before
    any job ran, or one whose every config was already done and whose report is current where it was
    drawn), and the dated folders above it that this leaves empty (multirun/<date>/, multirun/)."""
    if sweep_dir is None or not sweep_dir.is_dir():
        return
    if any(p.is_file() and p.name != "multirun.yaml" for p in sweep_dir.rglob("*")):
        return
    shutil.rmtree(sweep_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # stops at the first folder that holds something else
        sweep_dir.parent.rmdir()
        sweep_dir.parent.parent.rmdir()
