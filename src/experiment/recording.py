"""How a run is recorded: the experiment's description, the tags that identify a run, its history and
Figure 1 as artifacts, and the ways a run ends other than finished."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_info

from src import plots
from src.config.identity import config_hash, flatten, group_hash, to_plain
from src.config.schema import Config
from src.data.dataset import Dataset
from src.errors import RunDiverged, RunPaused, WorkerLost
from src.experiment import checkpoints
from src.experiment.job import SweepJob
from src.nn.train import History
from src.outcomes import Outcome
from src.tracking import names
from src.tracking.api import RunLog, Store
from src.tracking.provenance import git_tags

EXPERIMENT_NOTE = """\
netsweep runs of the assignment's net: one hidden ReLU layer, a softmax output, trained by minibatch SGD \
(or momentum, Adam) on the cross-entropy plus weight decay c (||W1||^2 + ||W2||^2).

- A run is one config. Params: the resolved config. Per epoch (step = epoch): train_loss, train_acc, \
val_loss (the cost), val_acc, val_ce (the cross-entropy alone: what sweeps compare). Final: test_acc, \
best_val_acc, best_val_ce, ... Artifacts: figure1.png, history.csv, weights.npz, \
config.yaml. Tag `outcome`: finished, diverged, pruned, error or killed.
- A sweep is a parent run `sweep ID (N configs)` (tag netsweep.role=sweep) with one child per config: \
expand it in the runs table. Its report/ artifacts hold curves.png, heatmap.png and the leaderboard; its \
winner.* tags name the best config.
- Made by `python -m src.run` (a run) and `python -m src.run -m ...` (a sweep); \
`python -m src.report <sweep id>` rebuilds a sweep's comparison.
"""


@dataclass(frozen=True)
class ConfigRecord:
    """What a run records of its composed config, worked out once from the DictConfig where the run starts:
    its identity (the config hash and the hash of its seed group), its params and its config.yaml."""

    config_hash: str
    group_hash: str
    params: dict[str, Any]  # the resolved config as dotted keys (optimizer.lr, ...)
    yaml: str  # the resolved config as YAML (the config.yaml artifact)

    @classmethod
    def of(cls, cfg: DictConfig) -> ConfigRecord:
        return cls(config_hash(cfg), group_hash(cfg), flatten(to_plain(cfg)), OmegaConf.to_yaml(cfg, resolve=True))


@dataclass(frozen=True)
class RunContext:
    """One run once it exists: where it records (`store`, `run`), the config it trains (`settings`, typed;
    `record`, its identity), the data it trains on, its name, where Figure 1 is also kept (`output_dir`,
    when there is one), the sweep job it belongs to (None for a run of its own) and the folder of its
    checkpoint file (src/experiment/checkpoints.py)."""

    store: Store
    run: RunLog
    settings: Config
    record: ConfigRecord
    dataset: Dataset
    name: str
    output_dir: Path | None = None
    sweep_job: SweepJob | None = None
    checkpoints: Path | None = None  # where its fit's state is saved (at most once a second; None: nowhere)
    experiment_id: str = ""  # the experiment its run is in ("": not asked of the store yet)
    fresh: bool = False  # a new run: it has no checkpoint to continue from

    @property
    def checkpoint(self) -> Path | None:
        """Its checkpoint file (named by the run's id, which a new run may only get once the store is open)."""
        return None if self.checkpoints is None else checkpoints.path_for(self.checkpoints, self.run.run_id)

    @property
    def title(self) -> str:
        """Figure 1's title: the run's name, its data, optimizer and batch size."""
        data, optimizer = self.settings.data, self.settings.optimizer
        return f"{self.name}  ({data.name}, {optimizer.name}, batch {optimizer.batch_size})"


def run_tags(record: ConfigRecord, dataset: Dataset, overrides: Sequence[str] | None) -> dict[str, Any]:
    """What identifies a run and where it ran."""
    tags = {
        names.CONFIG_HASH: record.config_hash,
        names.GROUP_HASH: record.group_hash,
        names.DATA_FINGERPRINT: dataset.fingerprint,
        "data": dataset.summary(),
        names.OUTCOME: Outcome.RUNNING.value,
        "blas_threads": blas_threads(),
        "host": socket.gethostname(),
        "worker_pid": os.getpid(),
        **git_tags(),
    }
    if overrides is not None:
        tags[names.OVERRIDES] = " ".join(overrides)
    if os.environ.get("SLURM_JOB_ID"):  # trained in a Slurm job (hydra.launcher.backend=slurm): which one
        tags[names.SLURM_JOB_ID] = os.environ["SLURM_JOB_ID"]
    return tags


def history_csv(history: History) -> str:
    rows = history.rows()
    if not rows:
        return "epoch\n"
    header = ",".join(rows[0])
    return "\n".join([header] + [",".join(f"{value:.9g}" for value in row.values()) for row in rows]) + "\n"


def record_history(
    ctx: RunContext,
    history: History,
    best_epoch: int | None = None,
    diverged_at: int | None = None,
    stopped_at: tuple[int, str] | None = None,
) -> Path | None:
    """History CSV and Figure 1 as artifacts; Figure 1 is also kept in the run's output_dir when it has one.

    Figure 1 marks the best epoch, the epoch it diverged at, or (epoch, why) it stopped at."""
    ctx.run.log_text(history_csv(history), names.HISTORY)
    figure = plots.figure_one(
        history.metrics, ctx.title, best_epoch=best_epoch, diverged_at=diverged_at, stopped_at=stopped_at
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(ctx.output_dir or scratch) / names.FIGURE_ONE
        figure.savefig(path, dpi=100)  # this thread's Figure 1, drawn again for its next run: nothing to close
        ctx.run.log_file(path)
    return path if ctx.output_dir is not None else None


def close_with_error(run: RunLog) -> None:
    run.log_text(traceback.format_exc(), names.TRACEBACK)
    run.close(Outcome.ERROR, traceback.format_exc(limit=-1).strip().splitlines()[-1])


@contextlib.contextmanager
def closing_on_failure(run: RunLog) -> Iterator[None]:
    """Whatever interrupts the run ends it: KILLED on Ctrl-C or SIGTERM, FAILED with a traceback on an error."""
    try:
        yield
    except (RunDiverged, RunPaused):
        raise  # already recorded
    except KeyboardInterrupt as exc:  # its own words when its worker's process is ending (a Slurm job's SIGTERM)
        run.close(Outcome.KILLED, str(exc) if str(exc).startswith("SIGTERM") else "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException:
        close_with_error(run)
        raise


def refuse_a_second_attempt(store: Store, run_id: str) -> None:
    """A distributed engine re-runs a task whose worker died. Without a checkpoint to continue from, training
    again into the same run would log its first epochs twice, so the lost attempt ends `killed` and a rerun
    of the sweep trains the config anew."""
    phase = store.phase(run_id)
    if phase == Outcome.SCHEDULED:
        return
    reason = "its worker was lost while it trained; rerun the sweep to train it again"
    if phase == Outcome.RUNNING:
        store.run_log(run_id).close(Outcome.KILLED, reason)
    raise WorkerLost(f"run {run_id}: {reason}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (a sweep worker's covers the configs it ran): Linux's
    VmHWM. Not getrusage's ru_maxrss there, which counts the memory of the process that started this one
    (kept across exec): a run started from a notebook holding 2 GB would report 2 GB."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):  # not Linux: ru_maxrss, in bytes on macOS and in KiB elsewhere
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def blas_threads() -> int:
    """Threads the BLAS/OpenMP libraries may use in this process (a sweep limits them per worker)."""
    return max((int(pool["num_threads"]) for pool in threadpool_info()), default=1)
