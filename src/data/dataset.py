"""The `Dataset` every run trains on: pixel rows (`PixelRows`: as the source stores them, floats in [0, 1]
once scaled), split three ways by `split` from a `DecodedSource`."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src.data.checks import DecodedSource, Layout, fingerprint
from src.errors import DataError
from src.nn.rows import PixelRows


@dataclass(frozen=True)
class Dataset:
    """Images as pixel rows (uint8 as stored, or floats in [0, 1]; a net sees them scaled to floats in [0, 1]
    a batch or a chunk at a time) and integer labels 0..k-1, already split three ways."""

    name: str
    X_train: PixelRows
    y_train: NDArray[np.int64]
    X_val: PixelRows
    y_val: NDArray[np.int64]
    X_test: PixelRows
    y_test: NDArray[np.int64]
    num_classes: int
    fingerprint: str
    source: str  # where the images came from: a folder, a file, or "digits"
    layout: Layout  # how the source stores images: image_shape, dtype, pixel_max
    X_test_raw: NDArray[Any]  # the test images as the source stores them (for the saved model)

    @property
    def input_dim(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def float_nbytes(self) -> int:
        """What the three splits' pixel rows take as float32 (held that way before `PixelRows`)."""
        return sum(X.float_nbytes for X in (self.X_train, self.X_val, self.X_test))

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test, "
            f"{self.input_dim} features, {self.num_classes} classes"
        )


COPY_ROWS = 8192  # rows gathered at a time into an allocated array (a memory-mapped share's file)
Allocate = Callable[[str, tuple[int, ...], str], NDArray[Any]]  # (array name, shape, dtype) -> an array to fill


def in_memory(name: str, shape: tuple[int, ...], dtype: str) -> NDArray[Any]:
    """Where a split's arrays go by default: this process's memory."""
    return np.empty(shape, dtype=dtype)


def _rows(X: NDArray[Any], rows: NDArray[np.intp] | None, pixel_max: int, out: tuple[str, Allocate]) -> PixelRows:
    """Rows `rows` of pixel rows `X` (all of them when None) as stored, integer pixels to be divided by the
    source's full intensity; gathered a chunk at a time into the array `out` allocates (name, allocator),
    except rows kept whole in this process's memory, which are `X` itself (no copy)."""
    name, allocate = out
    if allocate is in_memory:
        return PixelRows.of(X if rows is None else X[rows], pixel_max)
    n = len(X) if rows is None else len(rows)
    kept = allocate(name, (n, X.shape[1]), X.dtype.str)
    for start in range(0, n, COPY_ROWS):
        stop = min(start + COPY_ROWS, n)
        kept[start:stop] = X[start:stop] if rows is None else X[rows[start:stop]]
    return PixelRows.of(kept, pixel_max)


def split(decoded: DecodedSource, name: str, val_fraction: float, seed: int, allocate: Allocate = in_memory) -> Dataset:
    """Hold out `val_fraction` of the training set for validation, chosen by `seed`; the rows are kept as the
    source stores them (scaled to [0, 1] as a net reads them), made by `allocate` (in memory, or memory-mapped
    files a sweep's workers share)."""
    n = len(decoded.y_train)
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"{name}: data.val_fraction={val_fraction} leaves {n - n_val} training and {n_val} validation images"
        )
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    X, y, layout = decoded.X_train, decoded.y_train, decoded.layout
    pixel_max = layout["pixel_max"]
    return Dataset(
        name=name,
        X_train=_rows(X, train, pixel_max, ("X_train", allocate)),
        y_train=np.asarray(y[train]),
        X_val=_rows(X, val, pixel_max, ("X_val", allocate)),
        y_val=np.asarray(y[val]),
        X_test=_rows(decoded.X_test, None, pixel_max, ("X_test", allocate)),
        y_test=np.asarray(decoded.y_test),
        num_classes=decoded.num_classes,
        fingerprint=fingerprint(np.frombuffer(decoded.source_hash.encode(), np.uint8), val),
        source=decoded.source,
        layout=layout,
        X_test_raw=np.asarray(decoded.X_test).reshape(-1, *layout["image_shape"]),
    )
