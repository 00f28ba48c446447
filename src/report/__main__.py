"""`python -m src.report [<sweep_id>] [--out DIR] [--log]`: rebuild a sweep's report from MLflow alone.

Without a sweep id it lists the sweeps in the store (id, start, data, configs, winner). With one it reads the
store and writes the files into DIR (default `report-<sweep_id>/` here: index.html, the leaderboard and the
figures); `--log` also replaces the report on the sweep's parent run (which needs write access to the store)."""

import argparse
import gc
import sys
from pathlib import Path

from src.errors import EXIT_USER_ERROR, first_line
from src.report import listing
from src.report.build import build_report, summary
from src.tracking.opening import open_existing_store, resolve_uri


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.report",
        description="Rebuild a sweep's report (index.html, figures, leaderboard) from MLflow; without a sweep id, "
        "list the sweeps in the store.",
    )
    parser.add_argument(
        "sweep_id",
        nargs="?",
        help="the sweep's id, as printed by the sweep and tagged on its runs (or its parent run's id); "
        "omit it to list the sweeps",
    )
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    parser.add_argument(
        "--out", type=Path, help="write the report's files into this folder (default: report-<sweep_id>/ here)"
    )
    parser.add_argument("--log", action="store_true", help="also log them under report/ on the sweep's parent run")
    args = parser.parse_args(argv)
    try:
        store = open_existing_store(resolve_uri(args.tracking_uri))
        if args.sweep_id is None:
            print("\n".join(listing.lines(store)))
            return 0
        report = build_report(store, args.sweep_id, out_dir=args.out or Path(f"report-{args.sweep_id}"), log=args.log)
    except Exception as exc:  # an unknown id, no store there, a server refusing us: one line
        print(f"netsweep: {first_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    for line in summary(report):
        print(f"[sweep {report.data.sweep_id}] {line}")
    return 0


if __name__ == "__main__":
    code = main()
    gc.freeze()  # the command is done: skip the interpreter's final garbage collection (~1 s with mlflow)
    sys.exit(code)
