"""`hydra.launcher.*`: the launcher's settings, their types and their defaults (this dataclass is the one
place they are set; Hydra's ConfigStore serves it as `hydra/launcher=netsweep`).

Settings with a fixed set of values are Enums, so OmegaConf refuses any other value as Hydra composes the
config ("hydra.launcher.backend=ray is invalid: use one of loky, dask, slurm"); `resume` is the
exception: Hydra reads `true` and `false` as booleans, which an Enum node refuses. Each setting is checked
once, as the settings are made (`__post_init__`), whoever makes them: Hydra, or a test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from src.errors import ConfigError
from src.outcomes import Outcome
from src.pruning import PruneRule, Rule
from src.tracking.api import RunRecord

LAUNCHER_TARGET = "hydra_plugins.netsweep_launcher.netsweep_launcher.NetsweepLauncher"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")  # fits in models:/<name>@best and registry filters
Choice = TypeVar("Choice", bound=Enum)
TIME_LIMIT = re.compile(r"(\d+-)?\d+(:\d\d){0,2}|UNLIMITED|INFINITE")  # sbatch --time


class Backend(str, Enum):
    """Where the sweep's jobs run."""

    loky = "loky"  # local worker processes
    dask = "dask"  # a Dask cluster (see `address`)
    slurm = "slurm"  # Slurm jobs, each a Dask worker (dask-jobqueue), started and ended with the sweep


class PruneBy(str, Enum):
    """What a pruning rule judges."""

    config = "config"  # the seeds of a config are judged on their mean and stop together
    seed = "seed"  # every seed on its own


class Resume(str, Enum):
    """What a rerun of the sweep trains again."""

    true = "true"  # nothing with a result (finished, diverged, pruned)
    false = "false"  # everything
    except_pruned = "except_pruned"  # the pruned configs only

    def skipped(self, results: Mapping[str, RunRecord]) -> dict[str, RunRecord]:
        """Those of `results` ({config key: the run with its result}) that a sweep resumed this way skips."""
        if self is Resume.false:
            return {}
        if self is Resume.except_pruned:
            return {key: run for key, run in results.items() if run.outcome != Outcome.PRUNED}
        return dict(results)


@dataclass
class SlurmSettings:
    """`hydra.launcher.slurm.*`: the jobs a sweep submits with backend=slurm. Each job is one Dask worker
    that trains configs one after another (what Slurm users set, as sbatch options)."""

    partition: str | None = None  # --partition; null: the cluster's default partition
    time: str = "01:00:00"  # --time of each job (a job trains several configs; a config it cannot finish
    #                        continues from its checkpoint in another job)
    cpus_per_job: int = 1  # --cpus-per-task: the BLAS threads one config trains with
    mem_per_job: str = "4G"  # --mem
    gpus_per_job: int = 0  # --gpus (0: none asked for)
    account: str | None = None  # --account
    qos: str | None = None  # --qos
    extra_directives: list[str] = field(default_factory=list)  # more #SBATCH options, e.g. ["--constraint=avx2"]
    setup: list[str] = field(default_factory=list)  # shell lines each job runs first: ["source ~/venv/bin/activate"]
    requeue: bool = True  # --requeue: a preempted job goes back in the queue (its config continues)
    scheduler_host: str | None = None  # the address of this machine the compute nodes reach; null: Dask's choice
    start_timeout_s: float = 600.0  # how long the sweep waits for its jobs to start (they may queue)
    log_dir: str = "slurm-logs"  # where the jobs' output goes (relative: to the working directory)

    def __post_init__(self) -> None:
        for key, value, least in (("cpus_per_job", self.cpus_per_job, 1), ("gpus_per_job", self.gpus_per_job, 0)):
            if value < least:
                raise ConfigError(f"hydra.launcher.slurm.{key}={value} is invalid: use a number >= {least}")
        if not TIME_LIMIT.fullmatch(self.time):
            raise ConfigError(
                f"hydra.launcher.slurm.time={self.time} is invalid: use sbatch's format, e.g. 01:00:00 or 1-12:00:00"
            )
        self.extra_directives = [str(line) for line in self.extra_directives]
        self.setup = [str(line) for line in self.setup]

    def directives(self) -> list[str]:
        """The sbatch options beyond what dask-jobqueue writes itself (partition, account, time, cpus, memory)."""
        lines = [f"--qos={self.qos}"] if self.qos else []
        lines += [f"--gpus={self.gpus_per_job}"] if self.gpus_per_job else []
        lines += ["--requeue"] if self.requeue else []
        return [*lines, *self.extra_directives]


@dataclass
class LauncherSettings:
    _target_: str = LAUNCHER_TARGET
    n_jobs: int = -1  # configs trained at once; -1: one per core
    backend: Backend = Backend.loky  # loky: local processes | dask: a Dask cluster (`address`) | slurm: jobs (`slurm`)
    address: str | None = None  # dask: scheduler address tcp://HOST:PORT; none starts a local cluster
    resume: bool | str = True  # true: skip configs with a result (finished, diverged, pruned); false: retrain all;
    #                           except_pruned: skip finished and diverged configs, retrain the pruned ones
    progress_interval_s: float = 10.0  # seconds between "running: ..." progress lines; 0 turns them off
    mlflow: bool | None = None  # group the sweep in MLflow (netsweep's own app only); null: when it is
    prune: Rule = Rule.none  # stop losing configs early: none | median | asha | sha (see src/pruning.py)
    prune_min_epochs: int = 2  # no config is pruned before this epoch (asha, sha: the first rung; README: why 2)
    prune_factor: int = 3  # asha, sha: rungs at min_epochs x factor^k, the top 1/factor go on
    prune_by: PruneBy = PruneBy.config  # config: a config's seeds are judged on their mean, stop together | seed
    register_best: str | None = None  # a model name: register the winner's model under it, alias "best"
    pack: str = "1"  # configs a worker trains as one computation: 1 (each alone) | auto | K (src/sweep/packing.py)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)  # backend=slurm: the jobs it submits

    def __post_init__(self) -> None:
        """Check every setting once (a value no sweep could use fails here, before anything is recorded)."""
        if not isinstance(self.slurm, SlurmSettings):  # Hydra hands nested settings over as a mapping
            self.slurm = SlurmSettings(**dict(self.slurm))
        self.backend = _choice(Backend, "backend", self.backend)
        self.prune = _choice(Rule, "prune", self.prune)
        self.prune_by = _choice(PruneBy, "prune_by", self.prune_by)
        self.resume = _choice(Resume, "resume", _resume_text(self.resume), shown=self.resume)
        if self.address and self.backend != Backend.dask:
            raise ConfigError(f"hydra.launcher.address={self.address} is only used with hydra.launcher.backend=dask")
        if self.n_jobs == 0:
            raise ConfigError(
                "hydra.launcher.n_jobs=0 is invalid: use a number of workers >= 1, or -1 for one per core"
            )
        if self.prune_min_epochs < 1:
            raise ConfigError(f"hydra.launcher.prune_min_epochs={self.prune_min_epochs} is invalid: use an epoch >= 1")
        if self.prune_factor < 2:
            raise ConfigError(
                f"hydra.launcher.prune_factor={self.prune_factor} is invalid: use 2 or more (asha keeps "
                "the top 1/factor at each rung)"
            )
        self.pack = str(self.pack).lower()
        if self.pack != "auto" and not (self.pack.isdigit() and int(self.pack) >= 1):
            raise ConfigError(
                f"hydra.launcher.pack={self.pack} is invalid: use 1 (each config alone), auto, or a pack size K >= 1"
            )
        if self.register_best is not None and not MODEL_NAME.fullmatch(str(self.register_best)):
            raise ConfigError(
                f"hydra.launcher.register_best={self.register_best!r} is not a usable model name: use letters, "
                "digits, '-', '_', '.' and spaces (no '/', ':', '@' or quotes), e.g. fashion-net"
            )

    @property
    def resume_mode(self) -> Resume:
        """`resume` as what it means (true and false arrive from Hydra as booleans, except_pruned as text)."""
        return Resume(_resume_text(self.resume))

    @property
    def pack_size(self) -> int | None:
        """At most how many configs a pack holds; None: auto (src/sweep/packing.py chooses)."""
        return None if self.pack == "auto" else int(self.pack)

    @property
    def prune_rule(self) -> PruneRule:
        return PruneRule(self.prune, self.prune_min_epochs, self.prune_factor, self.prune_by == PruneBy.config)

    def tags(self) -> dict[str, str]:
        """How the sweep runs, as tagged on its parent run: {"launcher.n_jobs": "-1", ...}."""
        values = {
            "n_jobs": self.n_jobs,
            "backend": self.backend.value,
            "resume": self.resume_mode.value,
            "prune": self.prune.value,
            "prune_min_epochs": self.prune_min_epochs,
            "prune_factor": self.prune_factor,
            "prune_by": self.prune_by.value,
        }
        return {f"launcher.{key}": str(value) for key, value in values.items()}


def _resume_text(value: bool | str) -> str:
    """A `resume` value as text: a bool (YAML's true, false), a string or a Resume -> its lower-case name."""
    if isinstance(value, Resume):
        return value.value
    return str(value).lower()


def _choice(kind: type[Choice], key: str, value: object, shown: object = None) -> Choice:
    """`value` as a member of `kind` (given as one, or as its value: settings made in Python), or an error
    naming the key (with the value as it was `shown`, if not as given) and the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        given = value if shown is None else shown
        raise ConfigError(f"hydra.launcher.{key}={given} is invalid: use one of {choices}") from None
