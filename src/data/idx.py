"""IDX files (MNIST, Fashion-MNIST): read and checked, with OpenML's copy of MNIST as a fallback."""

import gzip
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
    """Read one IDX file (optionally gzipped), checking magic number, dimensions and length."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); re-download or replace the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()!r})")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != IDX_UBYTE or ndim != expected_ndim:
        want = 0x0800 + expected_ndim
        raise DataError(f"{path}: IDX magic {int.from_bytes(raw[:4], 'big'):#010x}, expected {want:#010x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header + int(np.prod(dims))
    if len(raw) != expected_bytes:
        raise DataError(
            f"{path}: holds {len(raw) - header} data bytes but its header announces {dims} "
            f"({expected_bytes - header} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


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
