"""`DataShare`: a folder of decoded datasets that a sweep's parent writes once and its workers memory-map,
so N workers hold one copy of the images in the page cache instead of decoding N copies; and of the splits
made from them (one per validation share and seed: pixel rows as stored, uint8 for IDX files), which the
first worker that needs one writes straight into memory-mapped files and every other worker maps, so that
no worker holds its own copy of the images (on Fashion-MNIST 55 MB as uint8, 209 MB as float32) in private
memory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src import scratch
from src.data.checks import DecodedSource
from src.data.dataset import Allocate, Dataset
from src.nn.rows import PixelRows

SHARE_KIND = "netsweep-data-"  # a share's folder name starts so (src/scratch.py: a killed sweep's is removed later)
ARRAYS = ("X_train", "y_train", "X_test", "y_test")
SPLIT_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "X_test_raw")
PIXEL_ROWS = ("X_train", "X_val", "X_test")  # a split's `PixelRows`: their stored rows are what the files hold


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` while the block runs: workers that need the same split make it once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DataShare:
    """Passed explicitly from the sweep's parent to each job; picklable, so it reaches any worker that
    shares this machine's disk."""

    folder: str

    @classmethod
    def create(cls) -> DataShare:
        return cls(scratch.make_folder(SHARE_KIND))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        scratch.release(self.folder)

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

    def read_split(self, key: str) -> Dataset | None:
        """Split `key`, its arrays memory-mapped, if it was written."""
        entry = Path(self.folder) / key
        if not (entry / "meta.json").is_file():
            return None
        meta = json.loads((entry / "meta.json").read_text())
        arrays: dict[str, Any] = {  # plain arrays over the mapped files: no np.memmap indexing on training's hot path
            name: np.asarray(np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)) for name in SPLIT_ARRAYS
        }
        pixel_max = meta["layout"]["pixel_max"]
        arrays |= {name: PixelRows.of(arrays[name], pixel_max) for name in PIXEL_ROWS}
        return Dataset(**arrays, **meta)

    def write_split(self, key: str, make: Callable[[Allocate], Dataset]) -> Dataset:
        """Split `key`: made by `make` into files of the share (its float arrays written where they are
        allocated, never first in memory) unless another process made it first, then memory-mapped. A
        reader sees either no entry or a complete one."""
        folder = Path(self.folder)
        with _locked(folder / f"{key}.lock"):
            if (folder / key / "meta.json").is_file():
                return self._mapped(key)
            staging = folder / f"{key}.tmp{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                self._write_into(staging, make)
                staging.rename(folder / key)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self._mapped(key)

    def _mapped(self, key: str) -> Dataset:
        found = self.read_split(key)
        if found is None:
            raise FileNotFoundError(f"{Path(self.folder) / key}: the split written there is gone")
        return found

    @staticmethod
    def _write_into(staging: Path, make: Callable[[Allocate], Dataset]) -> None:
        allocated: dict[str, np.memmap] = {}

        def allocate(name: str, shape: tuple[int, ...], dtype: str) -> NDArray[Any]:
            mapped = np.lib.format.open_memmap(staging / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            allocated[name] = mapped
            return mapped

        dataset = make(allocate)  # the allocated arrays are in the page cache, which every process maps:
        for name in SPLIT_ARRAYS:  # nothing to flush to disk for them
            if name not in allocated:
                array = getattr(dataset, name)
                stored = array.stored if isinstance(array, PixelRows) else array
                np.save(staging / f"{name}.npy", np.ascontiguousarray(stored), allow_pickle=False)
        meta = {f.name: getattr(dataset, f.name) for f in fields(dataset) if f.name not in SPLIT_ARRAYS}
        (staging / "meta.json").write_text(json.dumps(meta))
