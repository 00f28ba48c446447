"""Benchmark: netsweep's speed against other implementations and against itself, side by side in one run.

    python bench/bench.py                 # Fashion-MNIST (apt-get install dataset-fashion-mnist), ~6 minutes
    python bench/bench.py --quick         # digits, small: what CI runs so this script cannot rot
    python bench/phases.py                # only the phases of a run and a sweep, and memory (bench/phases.py)

Every row is measured in this one run on this one machine, and rows that are compared are measured back to
back, so ratios hold on a shared, noisy machine better than seconds do. Sweeps record into copies of one
migrated store, as a user's second sweep would (a fresh store's schema migration costs about a second more).
Do not run it beside a test suite or anything else busy: `uptime` first. Writes the table as JSON (--json).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import halving, phases  # noqa: E402
from bench.contenders import assignment_epoch, sklearn_epoch, torch_available, torch_epoch  # noqa: E402
from bench.packs import pack_rows  # noqa: E402
from bench.planning import planning_ms_per_config  # noqa: E402
from src.config.schema import DataConfig, DataName, DigitsConfig, IdxConfig  # noqa: E402
from src.data.loader import load_dataset  # noqa: E402
from src.errors import DataError  # noqa: E402
from src.nn.mlp import init_params  # noqa: E402
from src.nn.optim import build_optimizer  # noqa: E402
from src.nn.train import Progress, TrainingData, TrainSettings, fit  # noqa: E402
from src.sweep.pool import worker_threads  # noqa: E402
from src.tracking.opening import open_store  # noqa: E402

HIDDEN, BATCH, LR, DECAY = 256, 32, 0.1, 1e-4
SWEEP = ["optimizer.lr=0.05,0.1", "model.decay=0,1e-4"]


class Bench:
    """Runs the CLI in scratch folders that all start from one migrated store."""

    def __init__(self, data_args: list):
        self.data_args = data_args
        self.scratch = Path(tempfile.mkdtemp(prefix="netsweep-bench-"))
        self.template = self.scratch / "template.db"
        open_store(f"sqlite:///{self.template}")

    def folder(self) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        shutil.copy(self.template, folder / "mlflow.db")
        return folder

    def cli(self, args: list, folder: Path) -> tuple[float, str]:
        """Wall seconds of `python -m src.run ARGS` in `folder`, and what it printed."""
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
        env.pop("HYDRA_FULL_ERROR", None)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "src.run", *args], cwd=folder, env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"python -m src.run {' '.join(args)} failed: {done.stderr[-800:]}")
        return elapsed, done.stdout

    def runs(self, folder: Path) -> list:
        store = open_store(f"sqlite:///{folder / 'mlflow.db'}")
        return [r for r in store.runs([store.experiment_id("netsweep")]) if r.tags.get("netsweep.role") != "sweep"]


def dataset(quick: bool):
    if quick:
        data: DataConfig = DigitsConfig(name=DataName.digits, val_fraction=0.15, test_fraction=0.2)
    else:
        data = IdxConfig(
            name=DataName.fashion_mnist,
            root="/usr/share/datasets/fashion-mnist",
            val_fraction=0.15,
            download=False,
            cache_dir="~/.cache/netsweep",
        )
    return load_dataset(data, seed=0), ([] if quick else ["data=fashion_mnist"])


def netsweep_epochs(ds, dtype, epochs: int) -> list:
    """epoch_time_s of netsweep's training loop (threads as the machine has them), for `epochs` epochs."""
    rng = np.random.default_rng(0)
    params = init_params(ds.input_dim, HIDDEN, ds.num_classes, rng, dtype=dtype)
    result = fit(
        params,
        TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val),
        optimizer=build_optimizer("sgd", params, lr=LR, decay=DECAY),
        settings=TrainSettings(batch_size=BATCH, epochs=epochs),
        progress=Progress.start(rng),
    )
    return result.history.metrics["epoch_time_s"]


def contender_epochs(function, ds, repeats: int) -> list:
    rng = np.random.default_rng(0)
    X = np.asarray(ds.X_train)  # the contenders take the whole split as floats
    return [function(X, ds.y_train, HIDDEN, ds.num_classes, BATCH, LR, DECAY, rng) for _ in range(repeats)]


def epoch_rows(ds, quick: bool) -> list:
    repeats, own_epochs = (2, 5) if quick else (1, 3)
    epochs = {
        "netsweep float32": netsweep_epochs(ds, np.float32, own_epochs),
        "netsweep float64": netsweep_epochs(ds, np.float64, own_epochs),
        "assignment formulation (float64)": contender_epochs(assignment_epoch, ds, repeats),
        "scikit-learn MLPClassifier (sgd)": contender_epochs(sklearn_epoch, ds, repeats),
    }
    if torch_available():
        import torch

        epochs[f"PyTorch {torch.__version__} eager CPU"] = contender_epochs(torch_epoch, ds, repeats)
    ours = float(np.median(epochs["netsweep float32"]))
    return [
        row(f"one epoch: {name}", float(np.median(times)), float(np.median(times)) / ours, "x netsweep float32")
        for name, times in epochs.items()
    ]


def row(what: str, value: float, ratio=None, against: str = "", unit: str = "s") -> dict:
    return {"what": what, "value": value, "unit": unit, "ratio": ratio, "against": against}


def busy_core_rows(bench: Bench) -> list:
    """One run's epoch, quiet and with one core kept busy by another process, for each thread setting."""
    rows, epochs = [], 3
    for setting in ("null", "1", str(os.cpu_count() or 1)):
        times = {}
        for state in ("quiet", "busy"):
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if state == "busy" else None
            try:
                folder = bench.folder()
                bench.cli(
                    [
                        *bench.data_args,
                        f"epochs={epochs}",
                        f"threads={setting}",
                        "tracking.log_model=false",
                        "tracking.evaluate=false",
                    ],
                    folder,
                )
                store = open_store(f"sqlite:///{folder / 'mlflow.db'}")
                (run,) = bench.runs(folder)
                times[state] = statistics.median(store.history(run.run_id, ["epoch_time_s"])["epoch_time_s"][1:])
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
        label = {"null": "default (measured)", "1": "threads=1"}.get(setting, f"threads={setting} (all cores)")
        rows.append(row(f"one run's epoch, {label}, quiet", times["quiet"]))
        rows.append(
            row(
                f"one run's epoch, {label}, one core busy",
                times["busy"],
                times["busy"] / times["quiet"],
                "x its quiet epoch",
            )
        )
    return rows


def sweep_rows(bench: Bench, epochs: int) -> list:
    """A 4-config sweep with 1 worker (in this process, threads as measured) and with 2 workers."""
    common = ["-m", *SWEEP, *bench.data_args, f"epochs={epochs}", "hydra.launcher.progress_interval_s=0"]
    serial, _ = bench.cli([*common, "hydra.launcher.n_jobs=1"], bench.folder())
    parallel, _ = bench.cli([*common, "hydra.launcher.n_jobs=2"], bench.folder())
    one_thread, _ = bench.cli([*common, "hydra.launcher.n_jobs=1", "threads=1"], bench.folder())
    label = f"4-config sweep, {epochs} epochs each"
    return [
        row(f"{label}, n_jobs=1", serial),
        row(f"{label}, n_jobs=2", parallel, serial / parallel, "x speed-up over n_jobs=1"),
        row(f"{label}, n_jobs=1 threads=1", one_thread),
        row(
            f"{label}, n_jobs=2 ({worker_threads(2)} thread(s) each)",
            parallel,
            one_thread / parallel,
            "x speed-up over n_jobs=1 threads=1",
        ),
    ]


def resume_rows(bench: Bench) -> list:
    """Resuming a finished 32-config digits grid against one single 1-epoch run, on the same store."""
    folder = bench.folder()
    grid = ["-m", "+sweep=decay_lr", "seed=0,1", "epochs=1", "hydra.launcher.progress_interval_s=0"]
    bench.cli(grid, folder)

    def trained() -> int:  # runs that trained (not the links a sweep makes to results it reuses)
        return sum(1 for r in bench.runs(folder) if "netsweep.reused_from" not in r.tags)

    before = trained()
    resume, printed = bench.cli(grid, folder)
    assert trained() == before == 32, printed[-500:]  # the resume trained nothing
    single, _ = bench.cli(["epochs=1"], folder)
    return [
        row("one run, 1 epoch (digits)", single),
        row("resume a finished 32-config grid (digits)", resume, resume / single, "x one 1-epoch run"),
    ]


def pruning_rows(bench: Bench, epochs: int) -> list:
    """The 16-config decay_lr grid in full and with asha pruning: epochs trained, best score, wall time."""
    common = ["-m", "+sweep=decay_lr", *bench.data_args, f"epochs={epochs}", "hydra.launcher.progress_interval_s=0"]
    results = {}
    for prune in ("none", "asha"):
        folder = bench.folder()
        seconds, _ = bench.cli([*common, f"hydra.launcher.prune={prune}"], folder)
        runs = bench.runs(folder)
        results[prune] = (
            seconds,
            sum(r.metrics.get("epochs_trained", 0) for r in runs),
            max(r.metrics.get("best_val_acc", 0) for r in runs),
        )
    (full_s, full_epochs, full_acc), (asha_s, asha_epochs, asha_acc) = results["none"], results["asha"]
    label = f"16-config decay_lr grid, {epochs} epochs"
    return [
        row(f"{label}, full: wall time", full_s),
        row(f"{label}, prune=asha: wall time", asha_s, asha_s / full_s, "x the full grid"),
        row(f"{label}, full: epochs trained", full_epochs, unit="epochs"),
        row(
            f"{label}, prune=asha: epochs trained",
            asha_epochs,
            asha_epochs / full_epochs,
            "x the full grid",
            unit="epochs",
        ),
        row(f"{label}, full: best val_acc", full_acc, unit="acc"),
        row(f"{label}, prune=asha: best val_acc", asha_acc, asha_acc - full_acc, "difference", unit="acc"),
    ]


def startup_and_memory(bench: Bench, ds) -> tuple[list, dict]:
    """Seconds from `python -m src.run` to its first training step (its first epoch line, less that epoch's
    own time), and the run's peak memory as it recorded it."""
    folder = bench.folder()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", *bench.data_args, "epochs=1"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_epoch_line = None
    for line in process.stdout:
        if first_epoch_line is None and line.startswith("epoch 1/"):
            first_epoch_line = time.perf_counter() - started
    if process.wait() != 0 or first_epoch_line is None:
        raise RuntimeError(f"the start-up run failed: {process.stderr.read()[-500:]}")
    (run,) = bench.runs(folder)
    first_step = first_epoch_line - run.metrics["epoch_time_s"]
    memory = {
        "single run peak RSS (its training process; with its writer: the memory rows)": run.metrics["peak_rss_mb"],
        "dataset float32 arrays": ds.float_nbytes / 2**20,
    }
    return [row("start-up: python -m src.run to its first training step", first_step)], memory


def slurm_rows(bench: Bench) -> list:
    """The 16-config decay_lr digits grid on a single-node Slurm cluster started for it (.ci/slurm-cluster):
    netsweep's backend=slurm (two jobs, each a worker for many configs) against Hydra's own
    hydra-submitit-launcher (one job per config, each paying its own start-up; no parent run, report,
    resume or pruning), both recording into a SQLite store on this machine."""
    cluster = Path(tempfile.mkdtemp(prefix="netsweep-bench-slurm-"))
    script = REPO / ".ci" / "slurm-cluster"
    subprocess.run([str(script), "start", str(cluster)], check=True, capture_output=True, text=True)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster / "slurm.conf")
    grid = ["-m", "+sweep=decay_lr"]
    try:
        slurm = [
            "hydra.launcher.backend=slurm",
            "hydra.launcher.progress_interval_s=0",
            "hydra.launcher.n_jobs=2",
            "hydra.launcher.slurm.mem_per_job=1G",
            "hydra.launcher.slurm.scheduler_host=127.0.0.1",
        ]
        ours, printed = bench.cli([*grid, *slurm], bench.folder())
        assert "[16/16 configs done]" in printed, printed[-500:]
        submitit = [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10",
        ]
        peer, _ = bench.cli([*grid, *submitit], bench.folder())
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([str(script), "stop", str(cluster)], capture_output=True, text=True)
        shutil.rmtree(cluster, ignore_errors=True)
    return [
        row("16-config decay_lr grid on Slurm (digits): hydra-submitit-launcher", peer),
        row("16-config decay_lr grid on Slurm (digits): netsweep backend=slurm", ours, ours / peer, "x the peer's"),
    ]


SECTIONS = (
    "phases",
    "epochs",
    "packs",
    "busy",
    "sweeps",
    "resume",
    "planning",
    "pruning",
    "halving",
    "slurm",
    "startup",
)


def planning_rows() -> list[dict]:
    ours, template, hydras = planning_ms_per_config(32)
    return [
        row("planning: the parent's cost per config (32-config grid)", ours, unit="ms"),
        row("planning: of which composing the grid's defaults tree once", template, unit="ms"),
        row(
            "planning: Hydra composing each config in full, per config",
            hydras,
            hydras / ours,
            "x netsweep's",
            unit="ms",
        ),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits and short runs (CI)")
    parser.add_argument("--slurm", action="store_true", help="also the Slurm rows (starts a single-node cluster)")
    parser.add_argument("--no-phases", action="store_true", help="leave out bench/phases.py's rows")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "bench.json")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="these sections only (repeatable)")
    parser.add_argument("--skip", action="append", choices=SECTIONS, default=[], help="leave out these (repeatable)")
    args = parser.parse_args(argv)
    try:
        ds, data_args = dataset(args.quick)
    except DataError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(
        f"data: {ds.summary()}; net {ds.input_dim}-{HIDDEN}-{ds.num_classes}, batch {BATCH}, lr {LR}, "
        f"decay {DECAY}; {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    bench = Bench(data_args)
    sections = {  # in this order: phases first, the least disturbed by what ran before
        "phases": lambda: [] if args.no_phases else phases.all_rows(args.quick),
        "epochs": lambda: epoch_rows(ds, args.quick),
        "packs": lambda: (
            pack_rows({"digits": ds}, sizes=(1, 4), epochs=2, hidden=32)
            if args.quick
            else pack_rows({"digits": dataset(True)[0], "Fashion-MNIST": ds})
        ),
        "busy": lambda: busy_core_rows(bench),
        "sweeps": lambda: sweep_rows(bench, epochs=2 if args.quick else 5),
        "resume": lambda: resume_rows(bench),
        "planning": planning_rows,
        "pruning": lambda: pruning_rows(bench, epochs=3 if args.quick else 8),
        "halving": lambda: [
            *halving.pack_grid_rows(bench, args.quick),
            *halving.halving_grid_rows(bench, args.quick),
            *halving.study_rows(bench, args.quick),
        ],
        "slurm": lambda: slurm_rows(bench) if args.slurm else [],
    }
    rows = []
    for name, rows_of in sections.items():
        if (not args.only or name in args.only) and name not in args.skip:
            rows += rows_of()
    memory: dict = {}
    if (not args.only or "startup" in args.only) and "startup" not in args.skip:
        startup, memory = startup_and_memory(bench, ds)
        rows += startup
    print_table(rows, memory)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": ds.summary(), "rows": rows, "memory_mb": memory}, indent=1))
    shutil.rmtree(bench.scratch, ignore_errors=True)
    print(f"\nwritten: {args.json}")
    return 0


def print_table(rows: list, memory: dict) -> None:
    width = max(len(r["what"]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'value':>11}  ratio")
    for item in rows:
        value = f"{item['value']:.0f} epochs" if item["unit"] == "epochs" else f"{item['value']:.3f} {item['unit']}"
        ratio = ""
        if item["ratio"] is not None:
            ratio = (
                f"{item['ratio']:+.4f} ({item['against']})"
                if item["unit"] == "acc"
                else f"{item['ratio']:.2f}{item['against']}"
            )
        print(f"{item['what']:<{width}}  {value:>11}  {ratio}")
    for name, value in memory.items():
        print(f"{name:<{width}}  {value:>9.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
