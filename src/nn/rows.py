"""`PixelRows`: image rows as their source stores them, scaled to the net's floats a batch or a chunk at a
time, never a whole split at once.

Integer images (uint8, 0..pixel_max) take a quarter of float32's memory: Fashion-MNIST's splits are 55 MB
as stored and 209 MB as float32. A run, a sweep's memory-mapped share and a pack's device all hold the stored
rows; a step gathers its batch and scales it, and an evaluation scales one chunk at a time. The scaling is
the one the data layer applied to whole splits before (`uint8 * float32(1 / pixel_max)`, in float32, then
cast to the net's dtype), so every float a net sees has the same bits as before.

Every function of src/nn that takes pixel rows takes a `PixelRows` or a plain float array (tests, callers
with floats of their own); `take_rows` and `chunk_rows` are how they read either.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src.nn.arrays import Array


@dataclass(frozen=True)
class PixelRows:
    """Rows `stored` ((n, d): uint8, or float32 already in [0, 1]) and the factor that makes them floats in
    [0, 1] (`scale`: 1 / pixel_max for integer rows, None for float rows, which are used as they are).
    `stored` may be any array-API library's array (a pack's device copy)."""

    stored: Array
    scale: float | None = None

    @classmethod
    def of(cls, stored: Array, pixel_max: int) -> "PixelRows":
        """Rows as a source stores them: integers are scaled by 1 / pixel_max, floats are kept."""
        integer = np.dtype(str(stored.dtype).rsplit(".", 1)[-1]).kind in "ui"  # numpy's, torch.uint8, ...
        return cls(stored, 1 / pixel_max if integer else None)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.stored.shape)

    def __len__(self) -> int:
        return int(self.stored.shape[0])

    @property
    def float_nbytes(self) -> int:
        """Bytes the rows would take as float32 (what a split of floats held before)."""
        n, d = self.shape
        return 4 * n * d

    def floats(self, start: int = 0, stop: int | None = None) -> NDArray[np.float32]:
        """Rows start..stop as float32 (NumPy rows only): all of them for tests and small data."""
        return _scaled(self.stored[start:stop], self.scale)

    def __array__(self, dtype: Any = None, copy: Any = None) -> NDArray[Any]:
        """The whole split as float32 floats (tests, small data): `np.asarray(rows)`."""
        floats = self.floats()
        return floats if dtype is None else floats.astype(dtype, copy=False)

    def to(self, move: Any) -> "PixelRows":
        """The same rows with `stored` moved by `move` (a backend's `asarray`): onto a pack's device."""
        return PixelRows(move(self.stored), self.scale)


def _scaled(stored: NDArray[Any], scale: float | None, out: NDArray[Any] | None = None) -> NDArray[Any]:
    """NumPy rows as float32 floats (the data layer's `uint8 * float32(1 / pixel_max)`), into `out` if given."""
    if scale is None:
        return stored if out is None else _cast(stored, out)
    scaled: NDArray[Any] = np.multiply(stored, np.float32(scale), out=out, dtype=np.float32)
    return scaled


def chunk_rows(X: "PixelRows | Array", start: int, stop: int, dtype: Any) -> Array:
    """Rows start..stop of `X` (pixel rows, or an array of floats) as floats of `dtype`, for an evaluation.
    Any array-API library's rows: NumPy's through `_scaled`; others cast and multiply as the standard says."""
    if not isinstance(X, PixelRows):
        part = X[start:stop, ...]
        return part.astype(dtype, copy=False) if isinstance(part, np.ndarray) else part
    part = X.stored[start:stop, ...]
    if isinstance(part, np.ndarray):
        return _scaled(part, X.scale).astype(dtype, copy=False)
    return scale_on_device(part, X.scale, dtype)


def scale_on_device(stored: Array, scale: float | None, dtype: Any) -> Array:
    """Rows of any array-API library as floats of `dtype` (the net's): cast to float32, multiplied by the
    float32 scale (the same bits as `_scaled`), then cast to `dtype`."""
    from src.nn.backend import namespace  # deferred: the backend seam imports array-api-compat

    xp = namespace(stored)
    if scale is not None:
        floats = xp.astype(stored, xp.float32)
        stored = floats * xp.asarray(scale, dtype=xp.float32, device=_device(stored))
    return stored if stored.dtype == dtype else xp.astype(stored, dtype)


def _device(array: Array) -> Any:
    import array_api_compat  # deferred, as above

    return array_api_compat.device(array)


class BatchLoader:
    """Gathers a batch of NumPy rows into a float buffer of the net's dtype, reused every step: integer rows
    go through a buffer of their own dtype, so a step allocates nothing."""

    def __init__(self, buffer: NDArray[Any]):
        self.buffer = buffer  # (batch_size, d) of the net's dtype
        self.stored: NDArray[Any] | None = None  # (batch_size, d) of the rows' stored dtype, made on first use
        self.floats: NDArray[np.float32] | None = None  # float32 rows for a net of another dtype

    def load(self, X: "PixelRows | NDArray[Any]", index: NDArray[np.intp]) -> NDArray[Any]:
        n, out = len(index), self.buffer[: len(index)]
        if not isinstance(X, PixelRows) or X.scale is None:
            rows = X.stored if isinstance(X, PixelRows) else X
            return np.take(rows, index, axis=0, out=out) if rows.dtype == out.dtype else _cast(rows[index], out)
        if self.stored is None or self.stored.dtype != X.stored.dtype:
            self.stored = np.empty(self.buffer.shape, dtype=X.stored.dtype)
        gathered = np.take(X.stored, index, axis=0, out=self.stored[:n])
        if out.dtype == np.float32:
            return _scaled(gathered, X.scale, out)
        if self.floats is None:
            self.floats = np.empty(self.buffer.shape, dtype=np.float32)
        return _cast(_scaled(gathered, X.scale, self.floats[:n]), out)


def _cast(rows: NDArray[Any], out: NDArray[Any]) -> NDArray[Any]:
    np.copyto(out, rows, casting="same_kind")
    return out


def take_rows(X: "PixelRows | Array", index: Array, dtype: Any) -> Array:
    """Rows `index` of `X` (any array-API library's; a `PixelRows` or floats) as floats of `dtype`."""
    from src.nn.backend import namespace  # deferred, as above

    if not isinstance(X, PixelRows):
        return namespace(X).take(X, index, axis=0)
    return scale_on_device(namespace(X.stored).take(X.stored, index, axis=0), X.scale, dtype)
