"""Load a dataset by config name and return one `Dataset`: train/val/test arrays plus a fingerprint.

Every loader validates what it reads and raises `DataError` naming the file and the problem, so a
missing or corrupt file costs the user one clear line rather than a traceback. Loaded data is cached
per process: a sweep worker that trains many configs reads the files once.
"""

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IDX_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08
MNIST_URL_HINT = "e.g. from https://yann.lecun.com/exdb/mnist/ or a mirror"


class DataError(ValueError):
    """A data file is missing, unreadable or holds something a classifier cannot train on."""


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

    @property
    def input_dim(self) -> int:
        return self.X_train.shape[1]

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test, "
            f"{self.input_dim} features, {self.num_classes} classes"
        )


# --- IDX files (MNIST, Fashion-MNIST) ------------------------------------------------------------


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
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


def load_idx_folder(root: Path) -> dict:
    """The four standard IDX files of `root`, with image and label counts checked against each other."""
    paths = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] + ".gz" for key, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(", ".join(missing))
    arrays = {key: read_idx(path, 3 if key.startswith("X") else 1) for key, path in paths.items()}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"X_{split}"]), len(arrays[f"y_{split}"])
        if n_images != n_labels:
            raise DataError(
                f"{paths[f'y_{split}']}: {n_labels} labels for {n_images} images in {paths[f'X_{split}']}"
            )
    return arrays


def _fetch_openml_mnist(cache_dir: Path) -> dict:
    from sklearn.datasets import fetch_openml

    with warnings.catch_warnings():  # its retry warnings would precede our one-line error
        warnings.simplefilter("ignore")
        bunch = fetch_openml("mnist_784", version=1, as_frame=False, data_home=str(cache_dir), parser="liac-arff")
    X = bunch.data.astype(np.uint8).reshape(-1, 28, 28)
    y = bunch.target.astype(np.int64)
    return {"X_train": X[:60000], "y_train": y[:60000], "X_test": X[60000:], "y_test": y[60000:]}


def load_idx_dataset(name: str, root: str, download: bool, cache_dir: str) -> dict:
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
        return _fetch_openml_mnist(Path(cache_dir).expanduser())
    except Exception as exc:  # offline, proxy, corrupt cache: all end the same way for the user
        raise DataError(
            f"MNIST files not found and the OpenML download failed ({type(exc).__name__}): "
            f"{where} ({MNIST_URL_HINT})"
        ) from None


# --- npz and digits -------------------------------------------------------------------------------


def load_npz(path: str) -> dict:
    """X_train, y_train, X_test, y_test from an .npz, never unpickling anything."""
    npz_path = Path(path).expanduser()
    if not npz_path.is_file():
        raise DataError(f"{npz_path}: no such file; set data.path to an .npz holding X_train, y_train, X_test, y_test")
    try:
        loaded = np.load(npz_path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(f"{npz_path}: holds a single array, not an .npz archive of X_train, y_train, X_test, y_test")
        with loaded as archive:
            missing = [key for key in IDX_FILES if key not in archive.files]
            if missing:
                raise DataError(f"{npz_path}: missing arrays {missing} (has {archive.files})")
            return {key: archive[key] for key in IDX_FILES}
    except DataError:
        raise
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataError(f"{npz_path}: holds object arrays (pickles), which are never loaded; save plain numeric arrays") from None
        raise DataError(f"{npz_path}: not an .npz archive ({exc})") from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{npz_path}: not a readable .npz ({exc})") from None


def _digits_table() -> np.ndarray:
    """scikit-learn's bundled digits as rows of 64 pixels then the label.

    Read straight from the file scikit-learn ships: importing scikit-learn would cost a second of start-up.
    """
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


def load_digits_arrays(test_fraction: float) -> dict:
    """scikit-learn's bundled digits, with a fixed test split (seed 0) so every run tests on the same images."""
    table = _digits_table()
    X = (table[:, :-1] / 16.0).astype(np.float32)  # pixel values are 0..16
    y = table[:, -1].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return {"X_train": X[train], "y_train": y[train], "X_test": X[test], "y_test": y[test]}


# --- validation, scaling, split ---------------------------------------------------------------------


def _as_pixel_rows(X: np.ndarray, source: str, key: str) -> np.ndarray:
    """Flatten images to rows, checking they are uint8 (0-255) or finite floats in [0, 1].

    uint8 stays uint8 here (a quarter of the memory of float32); `_scaled` converts after the split.
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


def _scaled(rows: np.ndarray) -> np.ndarray:
    """float32 pixel rows in [0, 1]."""
    if rows.dtype != np.uint8:
        return rows
    return np.multiply(rows, np.float32(1 / 255), dtype=np.float32)


def _as_labels(y: np.ndarray, source: str, key: str, n_images: int) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {key} has shape {y.shape} and dtype {y.dtype}; expected 1-D integer labels")
    if len(y) != n_images:
        raise DataError(f"{source}: {key} has {len(y)} labels for {n_images} images")
    return y.astype(np.int64)


def check_arrays(arrays: dict, source: str) -> tuple[dict, int, str]:
    """Validate raw arrays; return them as pixel rows, the number of classes k (labels 0..k-1) and their hash."""
    X_train = _as_pixel_rows(arrays["X_train"], source, "X_train")
    X_test = _as_pixel_rows(arrays["X_test"], source, "X_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(f"{source}: train images have {X_train.shape[1]} pixels, test images {X_test.shape[1]}")
    y_train = _as_labels(arrays["y_train"], source, "y_train", len(X_train))
    y_test = _as_labels(arrays["y_test"], source, "y_test", len(X_test))
    num_classes = int(y_train.max()) + 1
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise DataError(
                f"{source}: {key} has labels in [{y.min()}, {y.max()}]; expected 0..{num_classes - 1}"
            )
    if num_classes < 2:
        raise DataError(f"{source}: y_train holds a single class; a classifier needs at least two")
    checked = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    return checked, num_classes, fingerprint(*checked.values())


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of array contents, shapes and dtypes.

    A Dataset's fingerprint hashes the validated source arrays and the validation indices, so equal
    fingerprints mean the same images, labels and split.
    """
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def split(checked: dict, num_classes: int, source_hash: str, name: str, val_fraction: float, seed: int) -> Dataset:
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
    return Dataset(
        name=name,
        X_train=_scaled(X[train]), y_train=y[train],
        X_val=_scaled(X[val]), y_val=y[val],
        X_test=_scaled(checked["X_test"]), y_test=checked["y_test"],
        num_classes=num_classes,
        fingerprint=fingerprint(np.frombuffer(source_hash.encode(), np.uint8), val),
    )


# --- entry point ----------------------------------------------------------------------------------


SHARED_CACHE_ENV = "NETSWEEP_DATA_CACHE"  # a folder of decoded datasets that sweep workers memory-map


def _read_source(name: str, options: dict) -> tuple[dict, int, str]:
    if name == "digits":
        return check_arrays(load_digits_arrays(options["test_fraction"]), "digits")
    if name in ("mnist", "fashion_mnist"):
        raw = load_idx_dataset(name, options["root"], options["download"], options["cache_dir"])
        return check_arrays(raw, str(Path(options["root"]).expanduser()))
    if name == "npz":
        return check_arrays(load_npz(options["path"]), str(Path(options["path"]).expanduser()))
    raise DataError(f"data.name={name!r} is unknown; use digits, mnist, fashion_mnist or npz")


def _shared_folder(name: str, source_key: tuple, stamps: tuple) -> Path | None:
    root = os.environ.get(SHARED_CACHE_ENV)
    if not root:
        return None
    key = hashlib.sha256(repr((name, source_key, stamps)).encode()).hexdigest()[:16]
    return Path(root) / f"{name}-{key}"


def _read_shared(folder: Path) -> tuple[dict, int, str]:
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in IDX_FILES}
    return arrays, meta["num_classes"], meta["source_hash"]


def _write_shared(folder: Path, checked: dict, num_classes: int, source_hash: str) -> None:
    """Write atomically: a worker sees either no folder or a complete one."""
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for key, array in checked.items():
        np.save(staging / f"{key}.npy", np.ascontiguousarray(array), allow_pickle=False)
    (staging / "meta.json").write_text(json.dumps({"num_classes": num_classes, "source_hash": source_hash}))
    try:
        staging.rename(folder)
    except OSError:  # another process shared it first
        for item in staging.iterdir():
            item.unlink()
        staging.rmdir()


@functools.lru_cache(maxsize=2)
def _checked_arrays(name: str, source_key: tuple, stamps: tuple) -> tuple[dict, int, str]:
    """Read and validate once per process; the key holds what selects the files and their stamps.

    When a sweep shares its data (SHARED_CACHE_ENV), the arrays are memory-mapped from the shared folder,
    so every worker reads the same pages instead of decoding and holding its own copy.
    """
    shared = _shared_folder(name, source_key, stamps)
    if shared is not None and (shared / "meta.json").is_file():
        return _read_shared(shared)
    checked = _read_source(name, dict(source_key))
    if shared is not None:
        _write_shared(shared, *checked)
        return _read_shared(shared)
    return checked


@functools.lru_cache(maxsize=1)
def _split_cached(name: str, source_key: tuple, stamps: tuple, val_fraction: float, seed: int) -> Dataset:
    return split(*_checked_arrays(name, source_key, stamps), name, val_fraction, seed)


def _file_stamps(options: dict) -> tuple:
    """Size and modification time of the files a config reads, so a replaced file is read anew."""
    paths = [Path(options["path"])] if "path" in options else []
    if "root" in options:
        paths = sorted(Path(options["root"]).expanduser().glob("*-ubyte*"))
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def _source_key(data_cfg) -> tuple[tuple, tuple]:
    options = {key: data_cfg[key] for key in data_cfg if key not in ("name", "val_fraction")}
    if "path" in options:
        options["path"] = os.path.abspath(os.path.expanduser(options["path"]))
    return tuple(sorted(options.items())), _file_stamps(options)


def load_dataset(data_cfg, seed: int) -> Dataset:
    """The dataset a `data` config names, split with `seed`; cached so repeated configs reuse it."""
    source_key, stamps = _source_key(data_cfg)
    return _split_cached(data_cfg.name, source_key, stamps, float(data_cfg.val_fraction), int(seed))


def share_source(data_cfg) -> None:
    """Decode `data_cfg`'s files once into the $NETSWEEP_DATA_CACHE folder, for sweep workers to memory-map."""
    source_key, stamps = _source_key(data_cfg)
    checked = _checked_arrays(data_cfg.name, source_key, stamps)
    shared = _shared_folder(data_cfg.name, source_key, stamps)
    if not (shared / "meta.json").is_file():  # it was read before sharing began
        _write_shared(shared, *checked)
