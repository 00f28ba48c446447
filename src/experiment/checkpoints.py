"""Checkpoints: what a run needs to continue from its last epoch, one file per run, written whole.

A checkpoint is an `.npz` of plain arrays (read back with `allow_pickle=False`) plus a JSON document of
everything else (the RNG's state, counters), stored in the same file as a 0-d string array. It is written
to a private file in the same folder and moved over the previous one with `os.replace`, so a kill at any
moment leaves either the checkpoint being written or the one before, never half of one (a writer killed
mid-write leaves its private file behind: the next save or removal of that run's checkpoint deletes it, so a
run holds at most one checkpoint and one such leftover). A run keeps one checkpoint; it is removed when the run
ends with an outcome that is not `killed`.

A run's state is taken after every epoch, but written (`Saver`) at most every SAVE_EVERY_S, the latest state
held in memory meanwhile and written when the fit is interrupted: a run of short epochs (digits: a few ms
each) writes a few checkpoints rather than one per epoch, a Ctrl-C or SIGTERM still leaves the last epoch's,
and a SIGKILL costs at most the last second of training (or the epoch in progress, when epochs are longer).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src.nn.arrays import Params
from src.nn.optim import Optimizer
from src.nn.train import EPOCH_METRICS, History, Progress
from src.tracking.opening import SQLITE_PREFIX
from src.tracking.sqlite_files import cache_dir

META = "__meta__"  # the array holding the JSON document
SUFFIX = ".ckpt.npz"
_STAGING_PREFIX = ".{}."  # a writer's private file: .<checkpoint name>.<random>.tmp, in the same folder
FOLDER = "netsweep-checkpoints"  # next to a SQLite store's file, unless tracking.checkpoint_dir says where
SAVE_EVERY_S = 1.0  # a run's checkpoint is written at most this often (and when it is interrupted)


@dataclass(frozen=True)
class Checkpoint:
    """A run's saved state: named arrays, and a JSON-serialisable document of the rest."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def folder_for(configured: str | None, tracking_uri: str) -> Path:
    """Where a store's runs keep their checkpoints: `tracking.checkpoint_dir` when set (absolute, so workers
    elsewhere find the same folder), else a folder next to a SQLite store's file, else one in netsweep's
    cache folder of this user (a tracking server keeps no files of ours)."""
    if configured:
        return Path(configured).expanduser().resolve()
    if tracking_uri.startswith(SQLITE_PREFIX):
        return Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent / FOLDER
    return cache_dir().resolve() / "checkpoints"


def path_for(folder: Path, run_id: str) -> Path:
    return folder / f"{run_id}{SUFFIX}"


def any_of(folder: Path, identity: str) -> bool:
    """Whether `folder` holds a checkpoint of the config whose hash is `identity` (only their documents are
    read): without one, a run of that config has nothing to continue from."""
    return any(_identity(path) == identity for path in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else False


def _identity(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return json.loads(str(stored[META])).get("config_hash")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def snapshot(params: Params, optimizer: Optimizer, progress: Progress, identity: str) -> Checkpoint:
    """A fit's whole state after `progress.epochs_done` epochs, for the config whose hash is `identity`."""
    arrays = {f"param.{name}": value for name, value in params.items()}
    arrays.update({f"best.{name}": value for name, value in progress.best_params.items()})
    arrays.update({f"optimizer.{name}": value for name, value in optimizer.state().items()})
    arrays.update({f"history.{name}": np.asarray(progress.history.metrics[name]) for name in EPOCH_METRICS})
    meta = {
        "config_hash": identity,
        "epochs_done": progress.epochs_done,
        "best_epoch": progress.best_epoch,
        "best_val_loss": progress.best_val_loss,
        "cost_limit": progress.cost_limit,
        "rng": progress.rng.bit_generator.state,
    }
    return Checkpoint(arrays, meta)


@dataclass
class Saver:
    """The `on_progress` of a run's fit: its state after each epoch, written to `path` once SAVE_EVERY_S
    have passed since the last write, else held (copied) until the next write or `flush`."""

    path: Path | Callable[[], Path]  # or where it is, once known (a run whose id comes later)
    params: Params  # the fit's own (updated in place as it trains)
    optimizer: Optimizer
    identity: str  # the config's hash
    clock: Callable[[], float] = time.monotonic  # a test's own clock
    held: Checkpoint | None = field(default=None, init=False)
    saved_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.saved_at = self.clock()

    def __call__(self, progress: Progress) -> None:
        state = snapshot(self.params, self.optimizer, progress, self.identity)
        if self.clock() - self.saved_at < SAVE_EVERY_S:
            self.held = Checkpoint({name: value.copy() for name, value in state.arrays.items()}, state.meta)
            return
        self.held = None
        self._write(state)

    def flush(self) -> None:
        """Write the state held since the last write (an interrupted run's last epoch), if any."""
        if self.held is not None:
            state, self.held = self.held, None
            self._write(state)

    def _write(self, state: Checkpoint) -> None:
        save(self.path() if callable(self.path) else self.path, state)
        self.saved_at = self.clock()


def restore(checkpoint: Checkpoint, params: Params, optimizer: Optimizer) -> Progress:
    """Put a snapshot's parameters and optimizer state into `params` and `optimizer` (in place, built for
    the same config) and return where its fit stood."""
    arrays, meta = checkpoint.arrays, checkpoint.meta
    for name, value in params.items():
        np.copyto(value, arrays[f"param.{name}"])
    optimizer.load_state(
        {name.removeprefix("optimizer."): v for name, v in arrays.items() if name.startswith("optimizer.")}
    )
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    history = History({name: [float(v) for v in arrays[f"history.{name}"]] for name in EPOCH_METRICS})
    best = {name: arrays[f"best.{name}"].astype(params[name].dtype) for name in params}
    return Progress(rng, history, best, int(meta["best_epoch"]), float(meta["best_val_loss"]), meta["cost_limit"])


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically (the folder is created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if META in checkpoint.arrays:
        raise ValueError(f"{META} is reserved for the checkpoint's document")
    remove_leftovers(path)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=_STAGING_PREFIX.format(path.name), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            arrays = {**checkpoint.arrays, META: np.array(json.dumps(checkpoint.meta))}
            # numpy's stubs read **arrays as possibly its allow_pickle flag (numpy >= 2.1): they are arrays
            np.savez(file, **arrays)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def load(path: Path | None, identity: str) -> Checkpoint | None:
    """The checkpoint at `path` of the config whose hash is `identity`, or None when there is none (or it
    cannot be read, or is another config's: the run then starts over)."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != META}
            meta = json.loads(str(stored[META]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return Checkpoint(arrays, meta) if meta.get("config_hash") == identity else None


def remove_leftovers(path: Path) -> None:
    """Delete the private files of earlier writers of `path` that were killed mid-write (one process trains a
    run at a time, so none of them is still being written: call it only once the run's writer is gone)."""
    if path.parent.is_dir():
        for leftover in path.parent.glob(_STAGING_PREFIX.format(path.name) + "*.tmp"):
            leftover.unlink(missing_ok=True)


def leftovers(path: Path) -> list[Path]:
    """The private files killed writers of `path` left behind."""
    return sorted(path.parent.glob(_STAGING_PREFIX.format(path.name) + "*.tmp")) if path.parent.is_dir() else []


def remove(path: Path | None) -> None:
    """Delete a run's checkpoint, and anything a killed writer of it left."""
    if path is not None:
        path.unlink(missing_ok=True)
        remove_leftovers(path)
