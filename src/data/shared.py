"""`DataShare`: a folder of decoded datasets that a sweep's parent writes once and its workers memory-map,
so N workers hold one copy of the images in the page cache instead of decoding N copies."""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class DataShare:
    """Passed explicitly from the sweep's parent to each job; picklable, so it reaches any worker that
    shares this machine's disk."""

    folder: str

    @classmethod
    def create(cls) -> "DataShare":
        return cls(tempfile.mkdtemp(prefix="netsweep-data-"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def read(self, key: str) -> tuple[dict, int, str, str, dict] | None:
        """(arrays memory-mapped, number of classes, source hash, source, layout) of entry `key`, if published."""
        entry = Path(self.folder) / key
        if not (entry / "meta.json").is_file():
            return None
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}
        return arrays, meta["num_classes"], meta["source_hash"], meta.get("source", ""), meta.get("layout")

    def write(
        self, key: str, checked: dict, num_classes: int, source_hash: str, source: str, layout: dict | None = None
    ) -> None:
        """Publish atomically: a reader sees either no entry or a complete one."""
        entry = Path(self.folder) / key
        staging = entry.with_name(f"{key}.tmp{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            np.save(staging / f"{name}.npy", np.ascontiguousarray(checked[name]), allow_pickle=False)
        meta = {"num_classes": num_classes, "source_hash": source_hash, "source": source, "layout": layout}
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            staging.rename(entry)
        except OSError:  # another process published it first
            shutil.rmtree(staging, ignore_errors=True)
