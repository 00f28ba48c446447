"""Per-epoch checkpoints: what a run needs to continue where it stopped, one file per run, written whole.

A checkpoint is an `.npz` of plain arrays (read back with `allow_pickle=False`) plus a JSON document of
everything else (the RNG's state, counters), stored in the same file as a 0-d string array. It is written
to a private file in the same folder and moved over the previous one with `os.replace`, so a kill at any
moment leaves either the last epoch's checkpoint or the one before, never half of one. A run keeps one
checkpoint; it is removed when the run ends with an outcome that is not `killed`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

META = "__meta__"  # the array holding the JSON document
SUFFIX = ".ckpt.npz"


@dataclass(frozen=True)
class Checkpoint:
    """A run's saved state: named arrays, and a JSON-serialisable document of the rest."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def path_for(folder: Path, run_id: str) -> Path:
    return folder / f"{run_id}{SUFFIX}"


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically (the folder is created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if META in checkpoint.arrays:
        raise ValueError(f"{META} is reserved for the checkpoint's document")
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, or None when there is none (or it cannot be read: a run then starts over)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != META}
            meta = json.loads(str(stored[META]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return Checkpoint(arrays, meta)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
