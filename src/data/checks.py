"""Checks on raw arrays before anything trains on them (pixel rows, labels 0..k-1, matching lengths), and
`DecodedSource`, the checked arrays a split is made from."""

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src.errors import DataError


def _as_pixel_rows(X: NDArray[Any], source: str, key: str) -> NDArray[Any]:
    """Flatten images to rows, checking they are uint8 (0-255) or finite floats in [0, 1].

    uint8 stays uint8 (a quarter of the memory of float32), in the split too: a net scales the rows a batch
    or a chunk at a time (src/nn/rows.py).
    """
    if X.dtype == object or not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{source}: {key} has dtype {X.dtype}; expected uint8 or float images")
    if X.ndim < 2 or len(X) == 0:
        raise DataError(f"{source}: {key} has shape {X.shape}; expected (n_images, ...) with n_images > 0")
    rows = X.reshape(len(X), -1)
    if rows.dtype == np.uint8:
        return rows
    if np.issubdtype(rows.dtype, np.integer):
        if rows.min() < 0 or rows.max() > 255:
            raise DataError(f"{source}: {key} holds integers outside 0-255")
        return rows.astype(np.uint8)
    rows = rows.astype(np.float32, copy=False)
    if not np.isfinite(rows).all():
        raise DataError(f"{source}: {key} holds NaN or infinite values")
    low, high = float(rows.min()), float(rows.max())
    if low < 0 or high > 1:
        raise DataError(f"{source}: {key} values span [{low:g}, {high:g}]; expected uint8 0-255 or floats in [0, 1]")
    return rows


def _as_labels(y: NDArray[Any], source: str, key: str, n_images: int) -> NDArray[np.int64]:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {key} has shape {y.shape} and dtype {y.dtype}; expected 1-D integer labels")
    if len(y) != n_images:
        raise DataError(f"{source}: {key} has {len(y)} labels for {n_images} images")
    return y.astype(np.int64)


Layout = dict[str, Any]  # how a source stores its images: image_shape (list), dtype (text), pixel_max (int)


@dataclass(frozen=True)
class DecodedSource:
    """A data source's arrays as read and checked, before any split: pixel rows (uint8 as stored, or floats
    in [0, 1]) and labels 0..k-1, with what a split and a run's record need to know of them."""

    X_train: NDArray[Any]
    y_train: NDArray[np.int64]
    X_test: NDArray[Any]
    y_test: NDArray[np.int64]
    num_classes: int  # k: labels are 0..k-1
    source_hash: str  # `fingerprint` of the four arrays
    source: str  # where the images came from: a folder, a file, or "digits"
    layout: Layout

    def arrays(self) -> dict[str, NDArray[Any]]:
        """The four arrays by name (X_train, y_train, X_test, y_test)."""
        return {"X_train": self.X_train, "y_train": self.y_train, "X_test": self.X_test, "y_test": self.y_test}


def layout_of(X_train: NDArray[Any], pixel_max: int) -> Layout:
    """How the source stores its images: the shape of one image, the pixel type, a full-intensity pixel."""
    integer = np.issubdtype(X_train.dtype, np.integer)
    return {
        "image_shape": list(X_train.shape[1:]),
        "dtype": "uint8" if integer else str(X_train.dtype),
        "pixel_max": pixel_max if integer else 1,
    }


def check_arrays(raw: dict[str, NDArray[Any]], source: str, pixel_max: int) -> DecodedSource:
    """Validate a source's raw arrays (`pixel_max`: the value of a full-intensity integer pixel) and return
    them as pixel rows, with the number of classes k (labels 0..k-1), their hash and the source's layout."""
    X_train = _as_pixel_rows(raw["X_train"], source, "X_train")
    X_test = _as_pixel_rows(raw["X_test"], source, "X_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(f"{source}: train images have {X_train.shape[1]} pixels, test images {X_test.shape[1]}")
    y_train = _as_labels(raw["y_train"], source, "y_train", len(X_train))
    y_test = _as_labels(raw["y_test"], source, "y_test", len(X_test))
    num_classes = int(y_train.max()) + 1
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise DataError(f"{source}: {key} has labels in [{y.min()}, {y.max()}]; expected 0..{num_classes - 1}")
    if num_classes < 2:
        raise DataError(f"{source}: y_train holds a single class; a classifier needs at least two")
    source_hash = fingerprint(X_train, y_train, X_test, y_test)
    layout = layout_of(raw["X_train"], pixel_max)
    return DecodedSource(X_train, y_train, X_test, y_test, num_classes, source_hash, source, layout)


def fingerprint(*arrays: NDArray[Any]) -> str:
    """A short hash of array contents, shapes and dtypes.

    A Dataset's fingerprint hashes the validated source arrays and the validation indices, so equal
    fingerprints mean the same images, labels and split.
    """
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
