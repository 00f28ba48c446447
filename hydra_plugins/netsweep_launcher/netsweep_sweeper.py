"""`hydra/sweeper=netsweep`: Hydra's grid (the same grammar as its basic sweeper: `a=1,2`, `range(...)`,
`choice(...)`, `glob(...)`, `hydra.sweeper.params`), run as one sweep however it is batched.

Unlike the basic sweeper it does not compose every config a second time to validate it when the launcher
is netsweep's (which composes and checks each config before any job starts), it tells the launcher how
many jobs the sweep has, and a failed config does not stop the batches after it: the sweep runs to the end,
reports, then fails.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.netsweep_launcher.netsweep_launcher import NetsweepLauncher
from src.sweep.jobs import failure


@dataclass
class NetsweepSweeperConf:
    _target_: str = "hydra_plugins.netsweep_launcher.netsweep_sweeper.NetsweepSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once; null: the whole grid
    params: dict[str, str] | None = None  # key: comma-separated values, as on the command line


ConfigStore.instance().store(group="hydra/sweeper", name="netsweep", node=NetsweepSweeperConf, provider="netsweep")


def grid(overrides: list) -> list[list[str]]:
    """Every combination of the sweep's values, the first key varying slowest (as Hydra's basic sweeper)."""
    axes = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HydraException(f"the netsweep sweeper does not support sweep type: {override.value_type.name}")
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(combination) for combination in itertools.product(*axes.values())]


class NetsweepSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        self.max_batch_size, self.params = max_batch_size, params or {}
        # Hydra's `validate_batch_is_legal` reads hydra_context and config
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        hydra_context, config, launcher = self.hydra_context, self.config, self.launcher
        if hydra_context is None or config is None or launcher is None:
            raise RuntimeError("Hydra calls `setup` before `sweep`")
        parser = OverridesParser.create(config_loader=hydra_context.config_loader)
        jobs = grid(parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments)))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        netsweep = launcher if isinstance(launcher, NetsweepLauncher) else None  # composes and checks each job
        if netsweep is not None:
            netsweep.expect(len(jobs))
        size = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else max(len(jobs), 1)
        returns: list[Sequence[JobReturn]] = []
        try:
            for start in range(0, len(jobs), size):
                batch = jobs[start : start + size]
                if netsweep is None:
                    self.validate_batch_is_legal(batch)
                returns.append(launcher.launch(batch, initial_job_idx=start))
        finally:
            if netsweep is not None:
                netsweep.finish()
        _raise_last_failure(returns)
        return returns


def _raise_last_failure(returns: list[Sequence[JobReturn]]) -> None:
    """Fail as Hydra's basic sweeper does, with the job's own exception; the last one, whose message
    (netsweep's) lists every failure of the sweep."""
    failures = [failure(ret) for batch in returns for ret in batch if isinstance(ret, JobReturn)]
    raised = [exc for exc in failures if exc is not None]
    if raised:
        raise raised[-1]
