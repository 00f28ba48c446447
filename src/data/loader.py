"""`load_dataset`: the `Dataset` a data config names, split with a seed.

The last split is kept per process (the configs of a sweep worker that share a seed reuse it); the decoded
images are not (a split holds the rows it selected, as stored). With a `DataShare`, a sweep's workers
memory-map the images the parent decoded and the splits the first of them made, so none of them decodes or
splits its own copy.
"""

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol

from src.data.checks import DecodedSource, check_arrays
from src.data.dataset import Dataset, split
from src.data.shared import DataShare
from src.data.sources import read_source

NOT_SOURCE_KEYS = ("name", "val_fraction")  # data keys that do not change which files are read

SourceOptions = tuple[tuple[str, Any], ...]  # a source's settings, sorted by key (hashable: a cache key)
FileStamps = tuple[tuple[str, int, int], ...]  # (path, size, mtime in ns) of the files a source reads


class DataSettings(Protocol):
    """A `data` config as the schema's dataclasses give it (src/config/schema.py): the source's name, the
    validation share, and the source's own settings as the dataclass's other fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def name(self) -> str: ...

    @property
    def val_fraction(self) -> float: ...


@dataclasses.dataclass(frozen=True)
class SourceKey:
    """Which files a data config reads, and their state: equal keys decode to equal arrays."""

    name: str
    options: SourceOptions
    stamps: FileStamps

    @property
    def share_key(self) -> str:
        """The entry of a `DataShare` this source is published under."""
        digest = hashlib.sha256(repr((self.name, self.options, self.stamps)).encode()).hexdigest()
        return f"{self.name}-{digest[:16]}"


def _file_stamps(options: dict[str, Any]) -> FileStamps:
    """Size and modification time of the files a config reads, so a replaced file is read anew."""
    paths = [Path(options["path"])] if "path" in options else []
    if "root" in options:
        paths = sorted(Path(options["root"]).expanduser().glob("*-ubyte*"))
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def _source_key(data: DataSettings) -> SourceKey:
    options = {key: value for key, value in dataclasses.asdict(data).items() if key not in NOT_SOURCE_KEYS}
    if "path" in options:
        options["path"] = os.path.abspath(os.path.expanduser(options["path"]))
    return SourceKey(str(data.name), tuple(sorted(options.items())), _file_stamps(options))


def _decoded(source: SourceKey) -> DecodedSource:
    """The source's arrays, read and validated. Not kept: once split, a run needs only the rows of its
    splits, so the whole decoded training images are freed (Fashion-MNIST's hold 47 MB)."""
    raw, origin, pixel_max = read_source(source.name, dict(source.options))
    return check_arrays(raw, origin, pixel_max)


def split_key(source: SourceKey, val_fraction: float, seed: int) -> str:
    """The entry of a `DataShare` the split of `source` by (val_fraction, seed) is written under."""
    return f"{source.share_key}-split-{val_fraction!r}-{seed}"


def _shared_split(source: SourceKey, share: DataShare, val_fraction: float, seed: int) -> Dataset | None:
    """The split, memory-mapped from `share` (made there by the first worker to need it), when the sweep's
    parent published the source there; None for a worker that cannot see the share (on another machine)."""
    key = split_key(source, val_fraction, seed)
    found = share.read_split(key)
    if found is not None:
        return found
    published = share.read(source.share_key)
    if published is None:
        return None
    try:
        return share.write_split(key, lambda allocate: split(published, source.name, val_fraction, seed, allocate))
    except OSError:  # a full disk: this worker's split stays in its own memory
        return split(published, source.name, val_fraction, seed)


@functools.lru_cache(maxsize=1)
def _split_cached(source: SourceKey, share: DataShare | None, val_fraction: float, seed: int) -> Dataset:
    shared = _shared_split(source, share, val_fraction, seed) if share is not None else None
    return shared if shared is not None else split(_decoded(source), source.name, val_fraction, seed)


def load_dataset(data: DataSettings, seed: int, share: DataShare | None = None) -> Dataset:
    """The dataset `data` names, split with `seed`; cached so repeated configs reuse it."""
    return _split_cached(_source_key(data), share, float(data.val_fraction), int(seed))


def share_source(data: DataSettings, share: DataShare) -> None:
    """Decode `data`'s files once into `share`, for sweep workers to memory-map (the sweep's parent)."""
    source = _source_key(data)
    if share.read(source.share_key) is None:
        share.write(source.share_key, _decoded(source))
