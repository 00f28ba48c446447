"""The `Dataset` every run trains on: float pixel rows in [0, 1], split three ways by `split`."""

from dataclasses import dataclass, field

import numpy as np

from src.data.checks import fingerprint
from src.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Images as float rows in [0, 1] and integer labels 0..k-1, already split three ways."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    fingerprint: str
    source: str = ""  # where the images came from: a folder, a file, or "digits"
    layout: dict = field(default_factory=dict)  # how the source stores images: image_shape, dtype, pixel_max
    X_test_raw: np.ndarray | None = None  # the test images as the source stores them (for the saved model)

    @property
    def input_dim(self) -> int:
        return self.X_train.shape[1]

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test, "
            f"{self.input_dim} features, {self.num_classes} classes"
        )


def _scaled(rows: np.ndarray, pixel_max: int) -> np.ndarray:
    """float32 pixel rows in [0, 1] (integer pixels divided by the source's full intensity)."""
    if rows.dtype != np.uint8:
        return rows
    return np.multiply(rows, np.float32(1 / pixel_max), dtype=np.float32)


def split(
    checked: dict,
    num_classes: int,
    source_hash: str,
    name: str,
    val_fraction: float,
    seed: int,
    source: str = "",
    layout: dict | None = None,
) -> Dataset:
    """Hold out `val_fraction` of the training set for validation, chosen by `seed`, and scale to [0, 1]."""
    n = len(checked["y_train"])
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"{name}: data.val_fraction={val_fraction} leaves {n - n_val} training and {n_val} validation images"
        )
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    X, y = checked["X_train"], checked["y_train"]
    layout = layout or {"image_shape": [X.shape[1]], "dtype": str(X.dtype), "pixel_max": 255}
    pixel_max = layout["pixel_max"]
    return Dataset(
        name=name,
        X_train=_scaled(X[train], pixel_max),
        y_train=y[train],
        X_val=_scaled(X[val], pixel_max),
        y_val=y[val],
        X_test=_scaled(checked["X_test"], pixel_max),
        y_test=checked["y_test"],
        num_classes=num_classes,
        fingerprint=fingerprint(np.frombuffer(source_hash.encode(), np.uint8), val),
        source=source,
        layout=layout,
        X_test_raw=np.asarray(checked["X_test"]).reshape(-1, *layout["image_shape"]),
    )
