"""Temporary files and folders named after the machine and the process that made them (a sweep's data share,
its lent-threads file), so that what a killed process leaves behind (SIGKILL: none of its cleanup ran) does
not stay for long: the next process of this machine to make an entry of the same kind removes those whose
process is gone. Entries of other machines (a temp folder shared over the network) and of live processes are
never touched.

Whether an entry's process is gone is read from a lock, not from its process id: each entry has an owner
file beside it (`<entry>.owner`), locked (`flock`) by the process that made it for as long as it lives, so
the kernel releases it however the process ends. A process id alone would mislead where processes of
another PID namespace share this temp folder and this machine's name (containers started with the host's
network and a shared /tmp): their live processes' ids look gone from here. An entry without an owner file
(made before owners existed, or on a filesystem without locks) is judged by its process id."""

import contextlib
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

OWNER = ".owner"  # the suffix of an entry's owner file
_held: dict[str, int] = {}  # entry -> the open, locked descriptor of its owner file (this process's entries)


def _machine() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _owner_prefix(kind: str) -> str:
    return f"{kind}{_machine()}-"


def _unlocked(owner: Path) -> bool:
    """Whether no process holds `owner`'s lock: its entry's process is gone. False when that cannot be told."""
    try:
        fd = os.open(owner, os.O_RDONLY)
    except OSError:  # removed meanwhile (its process released it), or unreadable
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (EWOULDBLOCK), or no locks here
        return False
    finally:
        os.close(fd)  # and with it the lock just taken
    return True


def _owner_of(entry: Path) -> Path:
    return entry.with_name(entry.name + OWNER)


def _orphaned(entry: Path, prefix: str) -> bool:
    owner = _owner_of(entry)
    if owner.exists():
        return _unlocked(owner)
    pid, sep, _ = entry.name[len(prefix) :].partition("-")
    return bool(sep and pid.isdigit()) and int(pid) != os.getpid() and not _alive(int(pid))


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


def remove_orphans(kind: str, directory: str | None = None) -> list[Path]:
    """Remove this machine's entries of `kind` (a name prefix such as "netsweep-data-") whose process is gone,
    with their owner files; returns the entries removed."""
    prefix = _owner_prefix(kind)
    removed = []
    for entry in Path(directory or tempfile.gettempdir()).glob(f"{prefix}*"):
        if entry.name.endswith(OWNER):
            if not entry.with_name(entry.name.removesuffix(OWNER)).exists() and _unlocked(entry):
                _remove(entry)  # an owner file whose entry was removed, left by a process that ended
            continue
        if str(entry) in _held or not _orphaned(entry, prefix):
            continue
        _remove(entry)
        _remove(_owner_of(entry))
        removed.append(entry)
    return removed


def _claim(kind: str) -> str:
    """The path of a new entry of `kind`, not made yet, whose owner file this process now holds locked."""
    fd, owner = tempfile.mkstemp(prefix=f"{_owner_prefix(kind)}{os.getpid()}-", suffix=OWNER)
    entry = owner.removesuffix(OWNER)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a filesystem without locks: the entry is judged by its process id
        os.close(fd)
        os.unlink(owner)
        return entry
    _held[entry] = fd
    return entry


def make_folder(kind: str) -> str:
    """A new temporary folder of `kind`, owned by this process (orphans of the same kind removed first)."""
    remove_orphans(kind)
    folder = _claim(kind)
    os.mkdir(folder, 0o700)
    return folder


def make_file(kind: str) -> str:
    """A new empty temporary file of `kind`, owned by this process (orphans of the same kind removed first)."""
    remove_orphans(kind)
    path = _claim(kind)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    return path


def release(entry: str) -> None:
    """This process is done with `entry` (it removed it): its owner file goes too."""
    fd = _held.pop(entry, None)
    with contextlib.suppress(OSError):
        os.unlink(entry + OWNER)
    if fd is not None:
        os.close(fd)
