"""Benchmark rows for packs and synchronous halving at the scale of a sweep, each sweep run by the CLI
(`python -m src.run -m ...`) in its own scratch folder and store, as bench/bench.py runs its sweep rows:

- the 16-config decay_lr grid on digits, `pack=auto` against `pack=1` (wall time; the children's metrics agree);
- the 16-config Fashion-MNIST grid at 12 epochs, `prune=sha pack=auto` against the full grid at `pack=1`
  (the share of its epochs trained, the winner's best val_acc against the full grid's best, wall time);
- the 48-config study (decay_lr x seeds 0-2, Fashion-MNIST, 30 epochs) with `prune=sha pack=auto`, beside its
  peer: the Optuna study of the same configs in bench/optuna_peer.py (epochs trained, wall time).

    python bench/halving.py --quick      # digits, small grids and few epochs: checks that this file runs
    python bench/halving.py              # the rows above (~6 minutes on a quiet 2-core machine)

bench/bench.py calls `pack_grid_rows(bench, quick)`, `halving_grid_rows(bench, quick)` and
`study_rows(bench, quick)` with its `Bench` (scratch folders copied from one migrated store, and `cli`); every
row is a dict in its `row` format ({what, value, unit, ratio, against}). Epochs trained are counted as the
store holds them: the val_ce points each child run logged, read back with MLflow's own client.

Halving's rungs (SHA): the first at epoch 1, factor 3 (rungs 1, 3, 9, 27), chosen on the real curves of the
12-epoch Fashion-MNIST grid, replayed with `src.pruning.halve`: at epoch 1 the full grid's winner (lr 0.1,
no decay) already has the lowest val_ce and 4 of the final top 5 are in the top 5 kept, so a first rung at 1
keeps the winner for 18% of the epochs (35 of 192); a first rung at 2 keeps the same winner for 30%, and
factors 2 and 4 keep a config 0.0004 below it for 23% and 19%. On the 48-config study the issue's replay gives
11.0% (first rung 1) against 15.8% (first rung 2), both winners in the full study's tie group.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEER = REPO / "bench" / "optuna_peer.py"
OPTUNA = "5.0.0"  # the peer's Optuna (the venv's own, pinned by hydra-optuna-sweeper, is 2.x)
SHA = ["hydra.launcher.prune=sha", "hydra.launcher.prune_min_epochs=1", "hydra.launcher.prune_factor=3"]
QUIET = ["hydra.launcher.progress_interval_s=0"]
LRS, DECAYS = "0.01,0.03,0.1,0.3", "0,1e-5,1e-4,1e-3"  # sweeps/decay_lr.yaml
QUICK = {"lr": "0.1,0.3", "decay": "0,1e-4", "one_worker": True}  # --quick: 4 configs of that grid, one worker


class Runner(Protocol):
    """What these rows need of bench/bench.py's `Bench`."""

    def folder(self) -> Path: ...

    def cli(self, args: list, folder: Path) -> tuple[float, str]: ...


def _row(what: str, value: float, ratio=None, against: str = "", unit: str = "s") -> dict:
    return {"what": what, "value": value, "unit": unit, "ratio": ratio, "against": against}


@dataclass(frozen=True)
class Grid:
    """A sweep's configs: learning rates x decays x seeds, on a dataset, for some epochs."""

    data: str
    epochs: int
    lr: str = LRS
    decay: str = DECAYS
    seeds: str = "0"
    one_worker: bool = False  # the CLI's sweeps with hydra.launcher.n_jobs=1 (no worker processes to start)

    @property
    def configs(self) -> int:
        return len(self.lr.split(",")) * len(self.decay.split(",")) * len(self.seeds.split(","))

    def overrides(self) -> list[str]:
        """The CLI's arguments for this grid (the decay_lr sweep file when its values are the file's)."""
        sweep = ["+sweep=decay_lr"] if (self.lr, self.decay) == (LRS, DECAYS) else []
        params = [] if sweep else [f"optimizer.lr={self.lr}", f"model.decay={self.decay}"]
        seeds = [] if self.seeds == "0" else [f"seed={self.seeds}"]
        data = [] if self.data == "digits" else [f"data={self.data}"]
        jobs = ["hydra.launcher.n_jobs=1"] if self.one_worker else []
        return ["-m", *sweep, *params, *seeds, *data, f"epochs={self.epochs}", *QUIET, *jobs]

    def peer_args(self) -> list[str]:
        """bench/optuna_peer.py's arguments for this grid."""
        options = {"--data": self.data, "--epochs": self.epochs, "--lr": self.lr, "--decay": self.decay}
        return [str(part) for pair in {**options, "--seeds": self.seeds}.items() for part in pair]


@dataclass(frozen=True)
class Sweep:
    """What one sweep took and trained, read back from its store."""

    seconds: float
    epochs: int  # val_ce points logged, summed over the child runs
    best_val_acc: float  # the best of any child run
    winner_val_acc: float  # the sweep's winner's (the parent run's), its config's mean over seeds
    finished_val_acc: float  # of the run trained to its end with the lowest best_val_ce (Optuna's best trial)
    best_val_ce: dict  # config hash -> the run's best_val_ce (seeds apart)


def read_sweep(folder: Path, seconds: float) -> Sweep:
    """The one sweep recorded in `folder`'s store, read with MLflow's client (as tests/helpers.py reads it)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("netsweep")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    (parent,) = [r for r in runs if r.data.tags.get("netsweep.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    epochs = sum(len({m.step for m in client.get_metric_history(r.info.run_id, "val_ce")}) for r in children)
    finished = [r.data.metrics for r in children if r.data.tags.get("outcome") == "finished"]
    return Sweep(
        seconds,
        epochs,
        max(r.data.metrics.get("best_val_acc", 0.0) for r in children),
        parent.data.metrics["best_val_acc"],
        min(finished, key=lambda metrics: metrics["best_val_ce"])["best_val_acc"],
        {r.data.tags["config_hash"]: r.data.metrics.get("best_val_ce") for r in children},
    )


def sweep(bench: Runner, grid: Grid, launcher: list[str]) -> Sweep:
    folder = bench.folder()
    seconds, _ = bench.cli([*grid.overrides(), *launcher], folder)
    return read_sweep(folder, seconds)


def pack_grid_rows(bench: Runner, quick: bool = False) -> list[dict]:
    """The 16-config decay_lr grid on digits (30 epochs, the config's default), `pack=auto` against `pack=1`:
    wall times, and how far apart the two give each config's best_val_ce (0 on NumPy: bit for bit). `quick`:
    4 configs, 2 epochs."""
    grid = Grid("digits", epochs=2, **QUICK) if quick else Grid("digits", epochs=30)
    alone = sweep(bench, grid, ["hydra.launcher.pack=1"])
    packed = sweep(bench, grid, ["hydra.launcher.pack=auto"])
    apart = max(abs(packed.best_val_ce[key] - value) for key, value in alone.best_val_ce.items())
    label = f"{grid.configs}-config decay_lr grid (digits, {grid.epochs} epochs)"
    return [
        _row(f"{label}, pack=1: wall time", alone.seconds),
        _row(f"{label}, pack=auto: wall time", packed.seconds, packed.seconds / alone.seconds, "x pack=1"),
        _row(f"{label}, pack=auto: best_val_ce, largest difference to pack=1", apart, unit="ce"),
    ]


def halving_grid_rows(bench: Runner, quick: bool = False) -> list[dict]:
    """The 16-config decay_lr grid on Fashion-MNIST at 12 epochs (digits, 4, with `quick`): `prune=sha
    pack=auto` against the full grid at `pack=1`. `quick`: 4 configs on digits, 4 epochs."""
    grid = Grid("digits", epochs=4, **QUICK) if quick else Grid("fashion_mnist", epochs=12)
    full = sweep(bench, grid, ["hydra.launcher.pack=1"])
    sha = sweep(bench, grid, [*SHA, "hydra.launcher.pack=auto"])
    label = f"{grid.configs}-config decay_lr grid ({grid.data}, {grid.epochs} epochs)"
    total = grid.configs * grid.epochs
    return [
        _row(f"{label}, full, pack=1: wall time", full.seconds),
        _row(f"{label}, prune=sha pack=auto: wall time", sha.seconds, sha.seconds / full.seconds, "x the full grid"),
        _row(f"{label}, full: epochs trained", full.epochs, full.epochs / total, "x the grid's", unit="epochs"),
        _row(f"{label}, prune=sha: epochs trained", sha.epochs, sha.epochs / total, "x the grid's", unit="epochs"),
        _row(f"{label}, full: best val_acc", full.best_val_acc, unit="acc"),
        _row(
            f"{label}, prune=sha: the winner's best val_acc",
            sha.winner_val_acc,
            sha.winner_val_acc - full.best_val_acc,
            "against the full grid's best",
            unit="acc",
        ),
    ]


def study_rows(bench: Runner, quick: bool = False) -> list[dict]:
    """The 48-config study (decay_lr x seeds 0-2, Fashion-MNIST, 30 epochs) with `prune=sha pack=auto`, and
    the Optuna peer of bench/optuna_peer.py on the same configs (GridSampler, SuccessiveHalvingPruner, two
    processes). Each side's best run is the one trained to its end with the lowest best_val_ce (Optuna's
    best trial), a single seed; netsweep's winner is a config, its seeds' mean. `quick`: 8 configs on digits,
    3 epochs."""
    grid = Grid("digits", epochs=3, seeds="0,1", **QUICK) if quick else Grid("fashion_mnist", 30, seeds="0,1,2")
    ours = sweep(bench, grid, [*SHA, "hydra.launcher.pack=auto"])
    peer = optuna_peer(bench.folder(), grid)
    label = f"{grid.configs}-config study ({grid.data}, {grid.epochs} epochs)"
    total = grid.configs * grid.epochs
    name = f"Optuna {peer['optuna']} peer"
    return [
        _row(f"{label}, {name}: wall time", peer["wall_s"]),
        _row(
            f"{label}, netsweep prune=sha pack=auto: wall time",
            ours.seconds,
            ours.seconds / peer["wall_s"],
            "x the peer's",
        ),
        _row(
            f"{label}, {name}: epochs trained",
            peer["epochs_trained"],
            peer["epochs_trained"] / total,
            "x the study's",
            unit="epochs",
        ),
        _row(
            f"{label}, netsweep prune=sha: epochs trained",
            ours.epochs,
            ours.epochs / total,
            "x the study's",
            unit="epochs",
        ),
        _row(
            f"{label}, {name}: configs whose seeds stopped at different epochs",
            peer["configs_with_seeds_stopped_apart"],
            unit="configs",
        ),
        _row(f"{label}, {name}: best trial's best val_acc", peer["best"]["best_val_acc"], unit="acc"),
        _row(
            f"{label}, netsweep prune=sha: best finished run's best val_acc",
            ours.finished_val_acc,
            ours.finished_val_acc - peer["best"]["best_val_acc"],
            "against the peer's",
            unit="acc",
        ),
        _row(
            f"{label}, netsweep prune=sha: the winner's best val_acc, its seeds' mean", ours.winner_val_acc, unit="acc"
        ),
    ]


def optuna_peer(folder: Path, grid: Grid) -> dict:
    """bench/optuna_peer.py's summary of its study of `grid`, in `folder`, with its wall time (`wall_s`)."""
    command = [optuna_python(), str(PEER), "--storage", f"sqlite:///{folder / 'optuna.db'}", *grid.peer_args()]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-800:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": wall}


def optuna_python() -> str:
    """A Python whose Optuna runs the peer: this one if its Optuna is 3 or later; otherwise a venv of its own in
    netsweep's cache folder (made once) that holds only Optuna OPTUNA and reads every other package (NumPy,
    SQLAlchemy, netsweep's dependencies) from this environment through a .pth file: both sides run one NumPy."""
    from src.tracking.sqlite_files import cache_dir, exclusive

    try:
        if int(importlib.metadata.version("optuna").split(".")[0]) >= 3:
            return sys.executable
    except importlib.metadata.PackageNotFoundError:
        pass
    env = cache_dir() / f"optuna-{OPTUNA}"
    python = env / "bin" / "python"
    env.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(env.parent / f"optuna-{OPTUNA}.lock"):
        if not (env / "ready").exists():
            shutil.rmtree(env, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
            site = subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            Path(site, "netsweep-bench.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--no-deps", f"optuna=={OPTUNA}"],
                check=True,
                capture_output=True,
                text=True,
            )
            (env / "ready").write_text(OPTUNA + "\n")
    return str(python)


ROWS = {"packs": pack_grid_rows, "halving": halving_grid_rows, "study": study_rows}


def main(argv=None) -> int:
    from bench.bench import Bench, print_table  # deferred: bench/bench.py imports this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, small grids, few epochs (CI)")
    parser.add_argument("--only", choices=sorted(ROWS), action="append", help="these rows only (repeatable)")
    args = parser.parse_args(argv)
    bench = Bench([])
    rows = []
    try:
        for name in args.only or ROWS:
            rows += ROWS[name](bench, args.quick)
    finally:
        shutil.rmtree(bench.scratch, ignore_errors=True)
    print_table(rows, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
