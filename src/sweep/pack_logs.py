"""A pack's log lines, each member's in its own job's log file, as it would be had the member run alone.

Hydra's `run_job` points the root logger's file handler at the log file of the job it runs; a worker runs
`run_job` for every member of a pack before the pack trains, so without this every line the pack's training
writes would land in its last member's file. `member_logs` captures each job's file as its `run_job` leaves
it, then, while the pack trains, sends a line to the file of the member whose work wrote it
(`src.experiment.packs.current_member`) and the pack's own lines ("training a pack of 4 configs") to all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from src.experiment.packs import current_member


def job_log_files() -> list[str]:
    """The files the root logger writes to now (the log of the job Hydra configured last)."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


class MemberLogs(logging.Handler):
    """Writes each record to the log files of the member that wrote it, or to every member's file."""

    def __init__(self, files: Sequence[Sequence[str]], like: logging.FileHandler):
        super().__init__(like.level)
        self.setFormatter(like.formatter)
        self.members: list[list[logging.FileHandler]] = []
        opened: dict[str, logging.FileHandler] = {}
        for paths in files:
            for path in paths:
                if path not in opened:
                    opened[path] = logging.FileHandler(path, mode="a", encoding=like.encoding)
                    opened[path].setFormatter(like.formatter)
                    opened[path].setLevel(like.level)
            self.members.append([opened[path] for path in paths])
        self.opened = list(opened.values())

    def emit(self, record: logging.LogRecord) -> None:
        index = current_member()
        targets = self.members[index] if index is not None and index < len(self.members) else self.opened
        for handler in targets:
            handler.handle(record)

    def close(self) -> None:
        for handler in self.opened:
            handler.close()
        super().close()


@contextlib.contextmanager
def member_logs(files: Sequence[Sequence[str]]) -> Iterator[None]:
    """While the block runs, the root logger's file handlers give way to a `MemberLogs` over `files` (per
    member, the files its job logged to); nothing changes where Hydra's job logging writes no file."""
    root = logging.getLogger()
    replaced = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    if not replaced or not any(files):
        yield
        return
    router = MemberLogs(files, replaced[0])
    for handler in replaced:
        root.removeHandler(handler)
    root.addHandler(router)
    try:
        yield
    finally:
        root.removeHandler(router)
        router.close()
        for handler in replaced:  # the last job's, as Hydra left them
            root.addHandler(handler)
