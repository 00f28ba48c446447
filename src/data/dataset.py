"""The `Dataset` every run trains on: float pixel rows in [0, 1], split three ways by `split` from a
`DecodedSource`."""

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


def _scaled(rows: NDArray[Any], pixel_max: int) -> NDArray[np.floating[Any]]:
    """float32 pixel rows in [0, 1] (integer pixels divided by the source's full intensity)."""
    if rows.dtype != np.uint8:
        return rows
    return np.multiply(rows, np.float32(1 / pixel_max), dtype=np.float32)


def split(decoded: DecodedSource, name: str, val_fraction: float, seed: int) -> Dataset:
    """Hold out `val_fraction` of the training set for validation, chosen by `seed`, and scale to [0, 1]."""
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
        X_train=_scaled(X[train], pixel_max),
        y_train=y[train],
        X_val=_scaled(X[val], pixel_max),
        y_val=y[val],
        X_test=_scaled(decoded.X_test, pixel_max),
        y_test=decoded.y_test,
        num_classes=decoded.num_classes,
        fingerprint=fingerprint(np.frombuffer(decoded.source_hash.encode(), np.uint8), val),
        source=decoded.source,
        layout=layout,
        X_test_raw=np.asarray(decoded.X_test).reshape(-1, *layout["image_shape"]),
    )
