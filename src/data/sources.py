"""Where images come from, by `data.name`: IDX folders (mnist, fashion_mnist), an .npz file, or
scikit-learn's bundled digits. Each reader returns raw X_train, y_train, X_test, y_test arrays."""

import gzip
import importlib.util
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from src.data.idx import IDX_FILES, RawArrays, load_idx_dataset
from src.errors import DataError

ARRAY_NAMES = tuple(IDX_FILES)  # X_train, y_train, X_test, y_test


def load_npz(path: str) -> RawArrays:
    """X_train, y_train, X_test, y_test from an .npz, never unpickling anything."""
    npz_path = Path(path).expanduser()
    if not npz_path.is_file():
        raise DataError(f"{npz_path}: no such file; set data.path to an .npz holding X_train, y_train, X_test, y_test")
    try:
        loaded = np.load(npz_path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(f"{npz_path}: holds a single array, not an .npz archive of {', '.join(ARRAY_NAMES)}")
        with loaded as archive:
            missing = [key for key in ARRAY_NAMES if key not in archive.files]
            if missing:
                raise DataError(f"{npz_path}: missing arrays {missing} (has {archive.files})")
            return {key: archive[key] for key in ARRAY_NAMES}
    except DataError:
        raise
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataError(
                f"{npz_path}: holds object arrays (pickles), which are never loaded; save plain numeric arrays"
            ) from None
        raise DataError(f"{npz_path}: not an .npz archive ({exc})") from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{npz_path}: not a readable .npz ({exc})") from None


DIGITS_PIXEL_MAX = 16  # scikit-learn's digits are 8x8 images of counts 0..16
UINT8_PIXEL_MAX = 255


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (images (1797, 8, 8) of counts 0..16, labels), read from the file scikit-learn
    ships them in, as its `load_digits` reads it, without importing scikit-learn (about 0.7 s and 65 MB,
    for a 60 kB file). Where the file is not where this scikit-learn keeps it, `load_digits` reads it."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits  # deferred: a layout this reader does not know

        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(path, "rt", encoding="utf-8") as rows:
        table = np.loadtxt(rows, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1]


def load_digits_arrays(test_fraction: float) -> RawArrays:
    """scikit-learn's bundled digits as 8x8 uint8 images (0..16), with a fixed test split (seed 0) so every
    run tests on the same images."""
    images, labels = bundled_digits()
    X = images.astype(np.uint8)
    y = labels.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return {"X_train": X[train], "y_train": y[train], "X_test": X[test], "y_test": y[test]}


def read_source(name: str, options: dict[str, Any]) -> tuple[RawArrays, str, int]:
    """The raw arrays of data source `name`, the text naming where they came from (for messages) and the
    value of a full-intensity pixel when the images are integers."""
    if name == "digits":
        return load_digits_arrays(options["test_fraction"]), "digits", DIGITS_PIXEL_MAX
    if name in ("mnist", "fashion_mnist"):
        raw = load_idx_dataset(name, options["root"], options["download"], options["cache_dir"])
        return raw, str(Path(options["root"]).expanduser()), UINT8_PIXEL_MAX
    if name == "npz":
        return load_npz(options["path"]), str(Path(options["path"]).expanduser()), UINT8_PIXEL_MAX
    raise DataError(f"data.name={name!r} is unknown; use digits, mnist, fashion_mnist or npz")
