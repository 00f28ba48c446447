"""`DataShare`: a folder of decoded datasets that a sweep's parent writes once and its workers memory-map,
so N workers hold one copy of the images in the page cache instead of decoding N copies."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.data.checks import DecodedSource

ARRAYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class DataShare:
    """Passed explicitly from the sweep's parent to each job; picklable, so it reaches any worker that
    shares this machine's disk."""

    folder: str

    @classmethod
    def create(cls) -> DataShare:
        return cls(tempfile.mkdtemp(prefix="netsweep-data-"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def read(self, key: str) -> DecodedSource | None:
        """Entry `key`, its arrays memory-mapped, if it was published."""
        entry = Path(self.folder) / key
        if not (entry / "meta.json").is_file():
            return None
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}
        return DecodedSource(**arrays, **meta)

    def write(self, key: str, decoded: DecodedSource) -> None:
        """Publish atomically: a reader sees either no entry or a complete one."""
        entry = Path(self.folder) / key
        staging = entry.with_name(f"{key}.tmp{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        for name, array in decoded.arrays().items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        meta = {
            "num_classes": decoded.num_classes,
            "source_hash": decoded.source_hash,
            "source": decoded.source,
            "layout": decoded.layout,
        }
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            staging.rename(entry)
        except OSError:  # another process published it first
            shutil.rmtree(staging, ignore_errors=True)
