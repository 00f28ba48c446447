"""Concurrent writers into one SQLite tracking store, as a sweep's workers write: N processes each create runs
and log every epoch's metrics through netsweep's own store (src/tracking: MLflow's SQLite store, SQLite's
20 s busy wait, netsweep's retries), all starting at once. Then the file is read back directly and compared
with what the writers were told was written.

    python bench/sqlite_writers.py                          # 2, 4, 8 writers, WAL and rollback journal, local disk
    python bench/sqlite_writers.py --folder /mnt/a /mnt/b --read-back /srv/export
                                 # the same file through two mounts of a network filesystem (two "hosts"):
                                 # writer i writes through folder i % 2; read back on the file server
    from bench.sqlite_writers import measure                # one row: measure(Path(d), writers=4)

A row: seconds, acknowledged writes, writes that raised (by kind: `locked`, `corrupt`, `other`), acknowledged
writes missing from the file (`lost`), and SQLite's `PRAGMA integrity_check`. What the numbers were on this
repository's machines, and what netsweep does because of them, is in the README ("Tracking from compute
nodes"); tests/unit/test_slurm_store.py checks this script on a tiny size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from src.outcomes import Outcome  # noqa: E402
from src.tracking.opening import open_store  # noqa: E402

DB = "mlflow.db"
METRICS = ("val_acc", "train_loss")  # logged together each epoch, as a run logs its epoch row
CORRUPT = ("malformed", "not a database", "disk i/o", "disk image", "no such table")


def _kind(exc: BaseException) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    return "corrupt" if any(word in text for word in CORRUPT) else "other"


def _writer(folder: str, index: int, runs: int, epochs: int, start: Any, out: Any) -> None:
    """One writer process: `runs` runs of `epochs` epochs each, into the store in `folder`."""
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)  # what fails is counted, not printed
    report: dict[str, Any] = {"acked": [], "errors": {}, "first_error": {}}
    try:
        store = open_store(f"sqlite:///{Path(folder) / DB}")
        experiment = store.experiment_id("writers")
        start.wait()
        report["t0"] = time.time()
        for r in range(runs):
            try:
                run = store.create_run(experiment, f"w{index}-r{r}", {"writer": index})
            except Exception as exc:
                report["errors"][_kind(exc)] = report["errors"].get(_kind(exc), 0) + 1
                report["first_error"].setdefault(_kind(exc), str(exc).splitlines()[0][:200])
                continue
            for epoch in range(1, epochs + 1):
                try:
                    run.log_metrics({"val_acc": epoch / epochs, "train_loss": 1 / epoch}, step=epoch)
                    report["acked"].append((run.run_id, epoch))
                except Exception as exc:
                    report["errors"][_kind(exc)] = report["errors"].get(_kind(exc), 0) + 1
                    report["first_error"].setdefault(_kind(exc), str(exc).splitlines()[0][:200])
            try:
                run.close(Outcome.FINISHED)
            except Exception as exc:
                report["errors"][_kind(exc)] = report["errors"].get(_kind(exc), 0) + 1
        report["t1"] = time.time()
    except Exception as exc:  # the store itself could not be opened or read
        report["errors"]["other"] = report["errors"].get("other", 0) + 1
        report["first_error"].setdefault("other", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    out.put(report)


def _read_back(db: Path) -> tuple[set[tuple[str, int]], str]:
    """(run id, epoch) pairs with every metric of that epoch in the file, and its integrity check (once every
    writer has exited; a plain connection: a read-only one cannot open a WAL store through some mounts)."""
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=60)) as connection:
            check = connection.execute("PRAGMA integrity_check").fetchone()[0]
            rows = connection.execute(
                "SELECT run_uuid, step, COUNT(DISTINCT key) FROM metrics GROUP BY run_uuid, step"
            ).fetchall()
    except sqlite3.Error as exc:
        return set(), f"unreadable: {exc}"
    return {(run, step) for run, step, keys in rows if keys == len(METRICS)}, check


def _new_store(folder: Path, journal: str) -> None:
    """A fresh store in `folder` (a new folder: this process keeps the stores it opened open), migrated and
    with its experiment, before the writers start (as a sweep's parent does), in the journal mode asked for."""
    store = open_store(f"sqlite:///{folder / DB}")
    store.experiment_id("writers")
    with sqlite3.connect(folder / DB, timeout=60) as connection:
        connection.execute(f"PRAGMA journal_mode={'WAL' if journal == 'wal' else 'DELETE'}")


def measure(
    folder: Path,
    writers: int,
    runs: int = 3,
    epochs: int = 30,
    journal: str = "wal",
    mounts: list[Path] | None = None,
    read_back: Path | None = None,
) -> dict[str, Any]:
    """One row: `writers` processes write `runs` x `epochs` epochs each into `folder`/mlflow.db at once.
    `mounts`: other paths of the same folder (a network filesystem mounted more than once: other hosts);
    writer i writes through ([folder] + mounts)[i % n]. `journal`: "wal" or "delete". `read_back`: where
    the file is read back from (the exported folder on the file server; default `folder`). Each row writes
    a new store in a new subfolder (left there: a store that broke can be looked at)."""
    row = f"{journal}-{writers}w-{uuid.uuid4().hex[:8]}"  # a new store for each row
    folder, mounts = folder / row, [mount / row for mount in mounts or []]
    folder.mkdir(parents=True)
    _new_store(folder, journal)
    paths = [folder, *mounts]
    context = multiprocessing.get_context("spawn")  # fresh processes, as workers on other hosts are
    start, out = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_writer, args=(str(paths[i % len(paths)]), i, runs, epochs, start, out))
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    reports = [out.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    present, integrity = _read_back((read_back / row if read_back else folder) / DB)
    acked = {tuple(pair) for report in reports for pair in report["acked"]}
    errors: dict[str, int] = {}
    for report in reports:
        for kind, count in report["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    started = [r["t0"] for r in reports if "t0" in r]
    ended = [r["t1"] for r in reports if "t1" in r]
    return {
        "writers": writers,
        "journal": journal,
        "mounts": len(paths),
        "attempted": writers * runs * epochs,
        "acked": len(acked),
        "errors": errors,
        "first_error": next((r["first_error"] for r in reports if r["first_error"]), {}),
        "lost": len(acked - present),
        "integrity": integrity,
        "seconds": round(max(ended) - min(started), 2) if started and ended else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", nargs="+", type=Path, default=None, help="the store's folder (and other mounts)")
    parser.add_argument("--writers", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--journal", nargs="+", default=["wal", "delete"], choices=["wal", "delete"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--read-back", type=Path, default=None, help="the folder as the file server sees it")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    scratch = None
    if args.folder is None:
        scratch = Path(tempfile.mkdtemp(prefix="sqlite-writers-"))
    folder, *mounts = args.folder or [scratch]
    try:
        for journal in args.journal:
            for writers in args.writers:
                row = measure(folder, writers, args.runs, args.epochs, journal, mounts, args.read_back)
                print(json.dumps(row), flush=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
