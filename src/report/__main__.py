"""`python -m src.report <sweep_id> [--out DIR]`: rebuild a sweep's comparison from MLflow alone."""

import argparse
import gc
import sys
from pathlib import Path
from typing import Optional

from src.errors import EXIT_USER_ERROR
from src.report.build import build_report, summary
from src.tracking.store import open_store, resolve_uri


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report",
                                     description="Rebuild a sweep's comparison (figures, leaderboard) from MLflow.")
    parser.add_argument("sweep_id", help="the sweep's id, as printed by the sweep and tagged on its runs")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    parser.add_argument("--out", type=Path, help="also write the report's files into this folder")
    args = parser.parse_args(argv)
    store = open_store(resolve_uri(args.tracking_uri))
    try:
        report = build_report(store, args.sweep_id, out_dir=args.out)
    except LookupError as exc:
        print(f"netsweep: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    for line in summary(report):
        print(f"[sweep {args.sweep_id}] {line}")
    return 0


if __name__ == "__main__":
    code = main()
    gc.freeze()  # the command is done: skip the interpreter's final garbage collection (~1 s with mlflow)
    sys.exit(code)
