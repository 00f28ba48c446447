"""IDX files (MNIST, Fashion-MNIST): read and checked, with OpenML's copy of MNIST as a fallback."""

import gzip
import io
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from src.errors import DataError

IDX_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
RawArrays = dict[str, NDArray[Any]]  # X_train, y_train, X_test, y_test as a source stores them
IDX_UBYTE = 0x08
MNIST_URL_HINT = "e.g. from https://yann.lecun.com/exdb/mnist/ or a mirror"


def read_idx(path: Path, expected_ndim: int) -> NDArray[np.uint8]:
    """Read one IDX file (optionally gzipped), checking magic number, dimensions and length.

    The pixels are decompressed straight into the array they are returned in: no copy of the file's
    contents is held beside it (Fashion-MNIST's training images are 47 MB)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            return _read_idx_stream(f, path, expected_ndim)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); re-download or replace the file") from None


def _read_idx_stream(f: io.BufferedIOBase, path: Path, expected_ndim: int) -> NDArray[np.uint8]:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {magic.hex()!r})")
    dtype_code, ndim = magic[2], magic[3]
    if dtype_code != IDX_UBYTE or ndim != expected_ndim:
        want = 0x0800 + expected_ndim
        raise DataError(f"{path}: IDX magic {int.from_bytes(magic, 'big'):#010x}, expected {want:#010x}")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    array = np.empty(dims, dtype=np.uint8)
    view, filled = memoryview(array.data).cast("B"), 0
    while filled < array.size:
        got = f.readinto(view[filled:])
        if not got:
            break
        filled += got
    extra = len(f.read()) if filled == array.size else 0  # read only when the announced pixels are all there
    if filled != array.size or extra:
        raise DataError(
            f"{path}: holds {filled + extra} data bytes but its header announces {dims} "
            f"({array.size} bytes); the file is truncated or corrupt"
        )
    return array


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(root: Path) -> RawArrays:
    """The four standard IDX files of `root`, with image and label counts checked against each other."""
    found = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
    paths = {key: path for key, path in found.items() if path is not None}
    missing = [IDX_FILES[key] + ".gz" for key in IDX_FILES if key not in paths]
    if missing:
        raise FileNotFoundError(", ".join(missing))
    arrays = {key: read_idx(path, 3 if key.startswith("X") else 1) for key, path in paths.items()}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"X_{split}"]), len(arrays[f"y_{split}"])
        if n_images != n_labels:
            raise DataError(f"{paths[f'y_{split}']}: {n_labels} labels for {n_images} images in {paths[f'X_{split}']}")
    return arrays


def fetch_openml_mnist(cache_dir: Path) -> RawArrays:
    """MNIST from OpenML (`mnist_784`) through scikit-learn, split 60k/10k as the IDX files are."""
    from sklearn.datasets import fetch_openml  # deferred: importing scikit-learn costs ~0.7 s, rarely needed

    with warnings.catch_warnings():  # its retry warnings would precede our one-line error
        warnings.simplefilter("ignore")
        bunch = fetch_openml("mnist_784", version=1, as_frame=False, data_home=str(cache_dir), parser="liac-arff")
    X = bunch.data.astype(np.uint8).reshape(-1, 28, 28)
    y = bunch.target.astype(np.int64)
    return {"X_train": X[:60000], "y_train": y[:60000], "X_test": X[60000:], "y_test": y[60000:]}


def load_idx_dataset(
    name: str, root: str, download: bool, cache_dir: str, fetch: Callable[[Path], RawArrays] = fetch_openml_mnist
) -> RawArrays:
    """The IDX files in `root`; when absent, MNIST from OpenML if `download` allows it."""
    root_path = Path(root).expanduser()
    try:
        return load_idx_folder(root_path)
    except FileNotFoundError as missing:
        where = f"put {missing} in {root_path} (or set data.root=/folder/with/them)"
        if name == "fashion_mnist":
            raise DataError(
                f"Fashion-MNIST files not found: {where}; on Debian/Ubuntu: apt-get install dataset-fashion-mnist"
            ) from None
        if not download:
            raise DataError(f"{name} files not found: {where}") from None
    try:
        return fetch(Path(cache_dir).expanduser())
    except Exception as exc:  # offline, proxy, corrupt cache: all end the same way for the user
        raise DataError(
            f"MNIST files not found and the OpenML download failed ({type(exc).__name__}): {where} ({MNIST_URL_HINT})"
        ) from None
