"""`load_dataset`: the `Dataset` a `data` config names, split with a seed, read once per process.

Loaded data is cached per process, so a sweep worker that trains many configs reads the files once; with
a `DataShare` the arrays are memory-mapped from what the sweep's parent decoded.
"""

import functools
import hashlib
import os
from pathlib import Path

from src.data.checks import check_arrays, layout_of
from src.data.dataset import Dataset, split
from src.data.shared import DataShare
from src.data.sources import read_source

NOT_SOURCE_KEYS = ("name", "val_fraction")  # data keys that do not change which files are read


def _file_stamps(options: dict) -> tuple:
    """Size and modification time of the files a config reads, so a replaced file is read anew."""
    paths = [Path(options["path"])] if "path" in options else []
    if "root" in options:
        paths = sorted(Path(options["root"]).expanduser().glob("*-ubyte*"))
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def _source_key(data_cfg) -> tuple[str, tuple, tuple]:
    options = {key: data_cfg[key] for key in data_cfg if key not in NOT_SOURCE_KEYS}
    if "path" in options:
        options["path"] = os.path.abspath(os.path.expanduser(options["path"]))
    return str(data_cfg.name), tuple(sorted(options.items())), _file_stamps(options)


def _share_key(name: str, options: tuple, stamps: tuple) -> str:
    return f"{name}-{hashlib.sha256(repr((name, options, stamps)).encode()).hexdigest()[:16]}"


@functools.lru_cache(maxsize=2)
def _decoded(name: str, options: tuple, stamps: tuple) -> tuple:
    """(arrays, classes, source hash, source, layout) read and validated once per process."""
    raw, source, pixel_max = read_source(name, dict(options))
    checked, num_classes, source_hash = check_arrays(raw, source)
    return checked, num_classes, source_hash, source, layout_of(raw, pixel_max)


@functools.lru_cache(maxsize=2)
def _checked(name: str, options: tuple, stamps: tuple, share: DataShare | None) -> tuple:
    """What `_decoded` gives, memory-mapped from `share` when the sweep's parent published it there; a worker
    that cannot see it (on another machine) decodes its own copy in memory and leaves no files behind."""
    published = share.read(_share_key(name, options, stamps)) if share is not None else None
    return published if published is not None else _decoded(name, options, stamps)


@functools.lru_cache(maxsize=1)
def _split_cached(source: tuple, share: DataShare | None, val_fraction: float, seed: int) -> Dataset:
    checked, num_classes, source_hash, origin, layout = _checked(*source, share)
    return split(checked, num_classes, source_hash, source[0], val_fraction, seed, origin, layout)


def load_dataset(data_cfg, seed: int, share: DataShare | None = None) -> Dataset:
    """The dataset a `data` config names, split with `seed`; cached so repeated configs reuse it."""
    return _split_cached(_source_key(data_cfg), share, float(data_cfg.val_fraction), int(seed))


def share_source(data_cfg, share: DataShare) -> None:
    """Decode `data_cfg`'s files once into `share`, for sweep workers to memory-map (the sweep's parent)."""
    source = _source_key(data_cfg)
    key = _share_key(*source)
    if share.read(key) is None:
        share.write(key, *_decoded(*source))
