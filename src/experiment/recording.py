"""How a run is recorded: the experiment's description, the tags that identify a run, its history and
Figure 1 as artifacts, and the ways a run ends other than finished."""

import contextlib
import os
import resource
import socket
import tempfile
import traceback
from pathlib import Path

from omegaconf import DictConfig
from threadpoolctl import threadpool_info

from src import plots
from src.config.identity import config_hash, group_hash
from src.data.dataset import Dataset
from src.errors import RunDiverged, WorkerLost
from src.nn.train import History
from src.outcomes import Outcome
from src.tracking import names
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


def run_tags(cfg: DictConfig, dataset: Dataset, overrides) -> dict:
    """What identifies a run and where it ran."""
    tags = {
        names.CONFIG_HASH: config_hash(cfg),
        names.GROUP_HASH: group_hash(cfg),
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
    return tags


def history_csv(history: History) -> str:
    rows = history.rows()
    if not rows:
        return "epoch\n"
    header = ",".join(rows[0])
    return "\n".join([header] + [",".join(f"{value:.9g}" for value in row.values()) for row in rows]) + "\n"


def record_history(
    run, history: History, title: str, output_dir: Path | None, best_epoch, diverged_at=None, stopped_at=None
) -> Path | None:
    """History CSV and Figure 1 as artifacts; Figure 1 is also kept in `output_dir` when there is one."""
    run.log_text(history_csv(history), names.HISTORY)
    figure = plots.figure_one(
        history.metrics, title, best_epoch=best_epoch, diverged_at=diverged_at, stopped_at=stopped_at
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(output_dir or scratch) / names.FIGURE_ONE
        figure.savefig(path, dpi=100)
        plots.plt.close(figure)
        run.log_file(path)
    return path if output_dir is not None else None


def close_with_error(run) -> None:
    run.log_text(traceback.format_exc(), names.TRACEBACK)
    run.close(Outcome.ERROR, traceback.format_exc(limit=-1).strip().splitlines()[-1])


@contextlib.contextmanager
def closing_on_failure(run):
    """Whatever interrupts the run ends it: KILLED on Ctrl-C or SIGTERM, FAILED with a traceback on an error."""
    try:
        yield
    except RunDiverged:
        raise  # already recorded
    except KeyboardInterrupt:
        run.close(Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException:
        close_with_error(run)
        raise


def refuse_a_second_attempt(store, run_id: str) -> None:
    """A distributed engine re-runs a task whose worker died. Training again into the same run would log
    every epoch twice, so the lost attempt ends `killed` and a rerun of the sweep trains the config anew."""
    phase = store.phase(run_id)
    if phase == Outcome.SCHEDULED:
        return
    reason = "its worker was lost while it trained; rerun the sweep to train it again"
    if phase == Outcome.RUNNING:
        store.run_log(run_id).close(Outcome.KILLED, reason)
    raise WorkerLost(f"run {run_id}: {reason}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (a sweep worker's covers the configs it ran)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> int:
    """Threads the BLAS/OpenMP libraries may use in this process (a sweep limits them per worker)."""
    return max((pool["num_threads"] for pool in threadpool_info()), default=1)
