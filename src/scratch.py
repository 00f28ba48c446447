"""Temporary files and folders named after the machine and the process that made them (a sweep's data share,
its lent-threads file), so that what a killed process leaves behind (SIGKILL: none of its cleanup ran) does
not stay for long: the next process of this machine to make an entry of the same kind removes those of its
processes that are gone. Entries of other machines (a temp folder shared over the network) and of live
processes are never touched."""

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path


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


def remove_orphans(kind: str, directory: str | None = None) -> list[Path]:
    """Remove this machine's entries of `kind` (a name prefix such as "netsweep-data-") whose process is gone;
    returns what was removed."""
    prefix = _owner_prefix(kind)
    removed = []
    for entry in Path(directory or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid, sep, _ = entry.name[len(prefix) :].partition("-")
        if not (sep and pid.isdigit()) or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def make_folder(kind: str) -> str:
    """A new temporary folder of `kind`, owned by this process (orphans of the same kind removed first)."""
    remove_orphans(kind)
    return tempfile.mkdtemp(prefix=f"{_owner_prefix(kind)}{os.getpid()}-")


def make_file(kind: str) -> str:
    """A new empty temporary file of `kind`, owned by this process (orphans of the same kind removed first)."""
    remove_orphans(kind)
    handle, path = tempfile.mkstemp(prefix=f"{_owner_prefix(kind)}{os.getpid()}-")
    os.close(handle)
    return path
