"""The `Dataset` every run trains on: float pixel rows in [0, 1], split three ways by `split` from a
`DecodedSource`."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src.data.checks import DecodedSource, Layout, fingerprint
from src.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Images as float rows in [0, 1] and integer labels 0..k-1, already split three ways."""

    name: str
    X_train: NDArray[np.floating[Any]]
    y_train: NDArray[np.int64]
    X_val: NDArray[np.floating[Any]]
    y_val: NDArray[np.int64]
    X_test: NDArray[np.floating[Any]]
    y_test: NDArray[np.int64]
    num_classes: int
    fingerprint: str
    source: str  # where the images came from: a folder, a file, or "digits"
    layout: Layout  # how the source stores images: image_shape, dtype, pixel_max
    X_test_raw: NDArray[Any]  # the test images as the source stores them (for the saved model)

    @property
    def input_dim(self) -> int:
        return int(self.X_train.shape[1])

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test, "
            f"{self.input_dim} features, {self.num_classes} classes"
        )


SCALE_ROWS = 8192  # rows scaled at a time: no uint8 copy of a whole split is held beside its floats
Allocate = Callable[[str, tuple[int, ...], str], NDArray[Any]]  # (array name, shape, dtype) -> an array to fill


def in_memory(name: str, shape: tuple[int, ...], dtype: str) -> NDArray[Any]:
    """Where a split's arrays go by default: this process's memory."""
    return np.empty(shape, dtype=dtype)


def _scaled(
    X: NDArray[Any], rows: NDArray[np.intp] | None, pixel_max: int, out: tuple[str, Allocate]
) -> NDArray[np.floating[Any]]:
    """Rows `rows` of pixel rows `X` (all of them when None) as float32 in [0, 1], integer pixels divided by
    the source's full intensity, written a chunk at a time into the array `out` allocates (name, allocator)."""
    name, allocate = out
    if X.dtype != np.uint8 and allocate is in_memory:  # floats, checked to be float32 in [0, 1] already
        return X if rows is None else X[rows]
    n = len(X) if rows is None else len(rows)
    scaled = allocate(name, (n, X.shape[1]), "float32")
    for start in range(0, n, SCALE_ROWS):
        stop = min(start + SCALE_ROWS, n)
        chunk = X[start:stop] if rows is None else X[rows[start:stop]]
        if chunk.dtype == np.uint8:
            np.multiply(chunk, np.float32(1 / pixel_max), out=scaled[start:stop], dtype=np.float32)
        else:
            scaled[start:stop] = chunk
    return scaled


def split(decoded: DecodedSource, name: str, val_fraction: float, seed: int, allocate: Allocate = in_memory) -> Dataset:
    """Hold out `val_fraction` of the training set for validation, chosen by `seed`, and scale to [0, 1]; the
    float arrays are made by `allocate` (in memory, or memory-mapped files a sweep's workers share)."""
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
        X_train=_scaled(X, train, pixel_max, ("X_train", allocate)),
        y_train=np.asarray(y[train]),
        X_val=_scaled(X, val, pixel_max, ("X_val", allocate)),
        y_val=np.asarray(y[val]),
        X_test=_scaled(decoded.X_test, None, pixel_max, ("X_test", allocate)),
        y_test=np.asarray(decoded.y_test),
        num_classes=decoded.num_classes,
        fingerprint=fingerprint(np.frombuffer(decoded.source_hash.encode(), np.uint8), val),
        source=decoded.source,
        layout=layout,
        X_test_raw=np.asarray(decoded.X_test).reshape(-1, *layout["image_shape"]),
    )
