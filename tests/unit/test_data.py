"""Loaders on small files written here: IDX (gz and raw) and npz, good and corrupt; digits; the split;
the decoded arrays a sweep shares with its workers."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

from src.config.schema import DigitsConfig, IdxConfig, NpzConfig
from src.data import dataset, loader
from src.data.idx import IDX_FILES, load_idx_dataset, load_idx_folder, read_idx
from src.data.loader import load_dataset, share_source
from src.data.shared import DataShare
from src.data.sources import bundled_digits, load_npz
from src.errors import DataError

from ..helpers import write_idx, write_idx_folder


def idx_cfg(root, name="mnist"):
    return IdxConfig(name=name, root=str(root), val_fraction=0.25, download=False, cache_dir=str(root))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_scaled_and_split(tmp_path, gz):
    arrays = write_idx_folder(tmp_path, gz=gz)
    ds = load_dataset(idx_cfg(tmp_path), seed=0)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 10, 10)
    assert ds.X_train.stored.dtype == np.uint8 and ds.X_train.shape[1] == 36  # held as stored: 1 byte a pixel
    floats = np.asarray(ds.X_train)
    assert floats.dtype == np.float32 and floats.min() >= 0 and floats.max() <= 1
    np.testing.assert_allclose(np.asarray(ds.X_test) * 255, arrays["X_test"].reshape(10, 36), atol=1e-3)
    assert ds.num_classes == 10 and ds.float_nbytes == 4 * 36 * 50
    seen = np.concatenate([ds.X_train, ds.X_val]) * 255
    assert sorted(map(tuple, np.rint(seen))) == sorted(map(tuple, arrays["X_train"].reshape(40, 36)))


def test_split_and_fingerprint_follow_the_seed(tmp_path):
    write_idx_folder(tmp_path)

    def fresh(seed):  # split anew, not the cached split of the same seed
        loader._split_cached.cache_clear()
        return load_dataset(idx_cfg(tmp_path), seed=seed)

    a, b, c = fresh(0), fresh(0), fresh(1)
    assert a is not b and a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.X_val, c.X_val)


@pytest.mark.parametrize(
    "corruption,message",
    [
        ("magic", "magic"),
        ("truncated", "truncated"),
        ("count", "labels for"),
        ("missing", "not found"),
        ("garbage", "cannot read"),
    ],
)
def test_corrupt_idx_files_are_named(tmp_path, corruption, message):
    write_idx_folder(tmp_path)
    images = tmp_path / (IDX_FILES["X_train"] + ".gz")
    labels = tmp_path / (IDX_FILES["y_train"] + ".gz")
    if corruption == "magic":
        write_idx(images, np.zeros((40, 6, 6)), magic=0x0801)
    elif corruption == "truncated":
        write_idx(images, np.zeros((40, 6, 6)), truncate=7)
    elif corruption == "count":
        write_idx(labels, np.zeros(39))
    elif corruption == "missing":
        images.unlink()
    elif corruption == "garbage":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20)[:-9])
    with pytest.raises(DataError, match=message) as caught:
        load_idx_folder(tmp_path) if corruption != "missing" else load_dataset(idx_cfg(tmp_path, "fashion_mnist"), 0)
    assert str(tmp_path) in str(caught.value)


def test_read_idx_checks_dimensions(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((3, 2, 2)))
    assert read_idx(path, 3).shape == (3, 2, 2)
    with pytest.raises(DataError, match="expected 0x00000801"):
        read_idx(path, 1)


def npz_cfg(path):
    return NpzConfig(name="npz", path=str(path), val_fraction=0.2)


def _npz_arrays(rng, dtype=np.uint8):
    X = rng.integers(0, 256, size=(30, 4, 4)).astype(np.uint8)
    X = X if dtype == np.uint8 else (X / 255).astype(dtype)
    return {"X_train": X, "y_train": np.arange(30) % 3, "X_test": X[:6], "y_test": np.arange(6) % 3}


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_npz_loads_uint8_or_unit_floats(tmp_path, rng, dtype):
    np.savez(tmp_path / "d.npz", **_npz_arrays(rng, dtype))
    ds = load_dataset(npz_cfg(tmp_path / "d.npz"), seed=0)
    assert (len(ds.y_train), len(ds.y_val), ds.input_dim, ds.num_classes) == (24, 6, 16, 3)
    floats = np.asarray(ds.X_train)
    assert floats.max() <= 1.0 and floats.dtype == np.float32
    assert ds.X_train.stored.dtype == (np.uint8 if dtype == np.uint8 else np.float32)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.update(X_train=a["X_train"].astype(object)), "object arrays"),
        (lambda a: a.update(X_train=np.where(a["X_train"] > 100, np.nan, 0.5)), "NaN"),
        (lambda a: a.update(X_train=a["X_train"] * 2.0), "values span"),
        (lambda a: a.update(y_test=a["y_test"] + 5), "labels in"),
        (lambda a: a.update(y_train=-a["y_train"]), "labels in"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "29 labels for 30 images"),
        (lambda a: a.pop("y_test"), "missing arrays"),
        (lambda a: a.update(X_test=a["X_test"][:, :2]), "pixels"),
    ],
)
def test_bad_npz_contents_are_named(tmp_path, rng, change, message):
    arrays = _npz_arrays(rng)
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(npz_cfg(path), seed=0)
    assert str(path) in str(caught.value)


def test_missing_and_non_npz_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_npz(str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz: not an .npz"):
        load_npz(str(tmp_path / "junk.npz"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="broken.npz: not a readable .npz"):
        load_npz(str(tmp_path / "broken.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_npz(str(tmp_path / "single.npy"))


def test_digits_are_scikit_learns_read_without_importing_it():
    images, labels = bundled_digits()
    from sklearn.datasets import load_digits

    bunch = load_digits()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
    code = "import sys; from src.data.sources import bundled_digits; bundled_digits(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_a_split_copied_in_chunks_equals_one_kept_whole_and_scales_as_before(tmp_path, monkeypatch):
    arrays = write_idx_folder(tmp_path, n_train=45, n_test=7)
    whole = load_dataset(idx_cfg(tmp_path), seed=2)
    monkeypatch.setattr(dataset, "COPY_ROWS", 4)  # chunks of 4 rows, the last one short
    decoded = loader._decoded(loader._source_key(idx_cfg(tmp_path)))
    made = []

    def allocate(name, shape, dtype):  # as a share's memory-mapped files are allocated
        made.append((name, dtype))
        return np.full(shape, 7, dtype=dtype)

    chunked = dataset.split(decoded, "mnist", 0.25, 2, allocate)
    assert made == [("X_train", "|u1"), ("X_val", "|u1"), ("X_test", "|u1")]
    for name in ("X_train", "X_val", "X_test"):
        np.testing.assert_array_equal(getattr(chunked, name).stored, getattr(whole, name).stored)
    # the floats a net reads: the bits the data layer made when it scaled whole splits
    expected = np.multiply(arrays["X_test"].reshape(7, -1), np.float32(1 / 255), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(chunked.X_test), expected)


def test_idx_pixels_are_read_into_their_array_and_extra_bytes_are_refused(tmp_path):
    path = write_idx(tmp_path / "x", np.arange(24).reshape(2, 3, 4), gz=False)
    np.testing.assert_array_equal(read_idx(path, 3), np.arange(24).reshape(2, 3, 4))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(DataError, match="holds 26 data bytes but its header announces \\(2, 3, 4\\)"):
        read_idx(path, 3)


def test_digits_default_has_a_fixed_test_set():
    cfg = DigitsConfig(name="digits", val_fraction=0.15, test_fraction=0.2)
    a, b = load_dataset(cfg, seed=0), load_dataset(cfg, seed=5)
    assert a.input_dim == 64 and a.num_classes == 10
    assert (len(a.y_train) + len(a.y_val), len(a.y_test)) == (1438, 359)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert a.fingerprint != b.fingerprint
    assert np.asarray(a.X_train).min() >= 0 and np.asarray(a.X_train).max() <= 1


def test_mnist_offline_without_files_says_where_to_put_them(tmp_path):
    def offline(cache_dir):
        raise OSError("network is unreachable")

    with pytest.raises(DataError, match="download failed \\(OSError\\): put train-images-idx3-ubyte.gz.*mnist"):
        load_idx_dataset("mnist", str(tmp_path / "mnist"), True, str(tmp_path), fetch=offline)
    with pytest.raises(DataError, match="mnist files not found"):
        load_idx_dataset("mnist", str(tmp_path / "mnist"), False, str(tmp_path), fetch=offline)
    fetched = load_idx_dataset(
        "mnist", str(tmp_path / "mnist"), True, str(tmp_path), fetch=lambda cache: {"X_train": np.zeros((2, 2, 2))}
    )
    assert fetched["X_train"].shape == (2, 2, 2)


def test_a_shared_source_is_decoded_once_and_memory_mapped(tmp_path):
    arrays = write_idx_folder(tmp_path)
    share = DataShare(str(tmp_path / "share"))
    share_source(idx_cfg(tmp_path), share)
    (entry,) = (tmp_path / "share").iterdir()
    assert {p.name for p in entry.iterdir()} == {"X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy", "meta.json"}
    shared = load_dataset(idx_cfg(tmp_path), seed=3, share=share)
    alone = load_dataset(idx_cfg(tmp_path), seed=3)
    np.testing.assert_array_equal(shared.X_train, alone.X_train)
    assert shared.fingerprint == alone.fingerprint and shared.source == str(tmp_path)
    read = share.read(entry.name)
    assert isinstance(read.X_train, np.memmap) and read.layout == {
        "image_shape": [6, 6],
        "dtype": "uint8",
        "pixel_max": 255,
    }
    np.testing.assert_array_equal(read.y_test, arrays["y_test"])
    share.write(entry.name, read)  # publishing twice keeps the first copy
    share.remove()
    assert not (tmp_path / "share").exists()
    unseen = DataShare(str(tmp_path / "elsewhere"))  # a worker on another machine: the parent's share is not there
    elsewhere = load_dataset(idx_cfg(tmp_path), seed=3, share=unseen)
    assert not isinstance(elsewhere.X_train.stored, np.memmap) and elsewhere.fingerprint == alone.fingerprint
    np.testing.assert_array_equal(elsewhere.X_train, alone.X_train)
    assert not (tmp_path / "elsewhere").exists()  # decoded in memory, nothing left behind


def test_workers_map_one_float_split_per_seed_the_first_of_them_writes(tmp_path):
    write_idx_folder(tmp_path)
    share = DataShare(str(tmp_path / "share"))
    share_source(idx_cfg(tmp_path), share)
    loader._split_cached.cache_clear()
    shared = load_dataset(idx_cfg(tmp_path), seed=3, share=share)
    alone = load_dataset(idx_cfg(tmp_path), seed=3)
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "X_test_raw"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name))
        array = getattr(shared, name)
        assert isinstance(getattr(array, "stored", array).base, np.memmap)  # mapped from the share, not our own
    assert (shared.fingerprint, shared.layout, shared.source) == (alone.fingerprint, alone.layout, alone.source)
    entries = sorted(p.name for p in (tmp_path / "share").iterdir() if p.is_dir())
    assert len(entries) == 2 and entries[1].endswith("-split-0.25-3")

    def never(allocate):
        raise AssertionError("the split was made already")

    again = share.write_split(entries[1], never)  # another worker asking for it maps the first one's
    np.testing.assert_array_equal(again.X_val, alone.X_val)
    loader._split_cached.cache_clear()
    other = load_dataset(idx_cfg(tmp_path), seed=4, share=share)
    assert (
        other.fingerprint != shared.fingerprint and len([p for p in (tmp_path / "share").iterdir() if p.is_dir()]) == 3
    )
    assert not list((tmp_path / "share").glob("*.tmp*"))  # no staging folder left behind
