"""Benchmark: netsweep's training speed, sweep parallelism, start-up time and memory, side by side.

    python bench/bench.py                 # Fashion-MNIST (apt-get install dataset-fashion-mnist)
    python bench/bench.py --quick         # digits, small: what CI runs so this script cannot rot

Everything is measured in one run on one machine and reported as seconds and ratios, which is what can be
compared on a shared, noisy machine. Writes the table as JSON too (--json).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.contenders import assignment_epoch, sklearn_epoch, torch_available, torch_epoch  # noqa: E402
from src.data.loader import load_dataset  # noqa: E402
from src.errors import DataError  # noqa: E402
from src.nn.mlp import init_params  # noqa: E402
from src.nn.optim import build_optimizer  # noqa: E402
from src.nn.train import fit  # noqa: E402

HIDDEN, BATCH, LR, DECAY = 256, 32, 0.1, 1e-4
SWEEP = ["optimizer.lr=0.05,0.1", "model.decay=0,1e-4"]


def dataset(quick: bool):
    if quick:
        cfg = {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.2}
    else:
        cfg = {"name": "fashion_mnist", "root": "/usr/share/datasets/fashion-mnist", "val_fraction": 0.15,
               "download": False, "cache_dir": "~/.cache/netsweep"}
    return load_dataset(OmegaConf.create(cfg), seed=0), ([] if quick else ["data=fashion_mnist"])


def netsweep_epochs(ds, dtype, epochs: int) -> list:
    """epoch_time_s as a netsweep run logs it, for each of `epochs` epochs."""
    rng = np.random.default_rng(0)
    params = init_params(ds.input_dim, HIDDEN, ds.num_classes, rng, dtype=dtype)
    optimizer = build_optimizer({"name": "sgd", "lr": LR}, params, DECAY)
    result = fit(params, ds.X_train, ds.y_train, ds.X_val, ds.y_val, optimizer=optimizer, decay=DECAY,
                 batch_size=BATCH, epochs=epochs, rng=rng)
    return result.history.metrics["epoch_time_s"]


def contender_epochs(function, ds, repeats: int) -> list:
    rng = np.random.default_rng(0)
    return [function(ds.X_train, ds.y_train, HIDDEN, ds.num_classes, BATCH, LR, DECAY, rng) for _ in range(repeats)]


def cli(args: list, store: Path, env_extra=None):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
    env.update(env_extra or {})
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "src.run", *args], cwd=store, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def startup_and_memory(data_args: list) -> dict:
    """Seconds from `python -m src.run` to its first training step, and the run's peak resident memory."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        process = cli([*data_args, "epochs=1"], Path(folder))
        first_step = None
        for line in process.stdout:
            if first_step is None and line.startswith("run ") and " on " in line:  # logged as training starts
                first_step = time.perf_counter() - started
        process.wait()
        if process.returncode != 0:
            raise RuntimeError(f"the single run failed: {process.stderr.read()}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"startup_s": first_step, "run_peak_rss_mb": peak_mb}


def sweep_seconds(data_args: list, epochs: int, n_jobs: int) -> tuple[float, list]:
    """Wall time of a 4-config sweep from a fresh store, and each config's logged peak memory."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        args = ["-m", *SWEEP, *data_args, f"epochs={epochs}", f"hydra.launcher.n_jobs={n_jobs}",
                "hydra.launcher.progress_interval_s=0"]
        started = time.perf_counter()
        process = cli(args, Path(folder))
        _, stderr = process.communicate()
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"the sweep failed: {stderr}")
        client = MlflowClient(f"sqlite:///{Path(folder) / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("netsweep").experiment_id])
        peaks = [r.data.metrics["peak_rss_mb"] for r in runs if "peak_rss_mb" in r.data.metrics]
    return elapsed, peaks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits and short runs (CI)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "bench.json")
    parser.add_argument("--sweep-epochs", type=int, default=None, help="epochs per sweep config")
    args = parser.parse_args(argv)
    try:
        ds, data_args = dataset(args.quick)
    except DataError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"data: {ds.summary()}; net {ds.input_dim}-{HIDDEN}-{ds.num_classes}, batch {BATCH}, lr {LR}, "
          f"decay {DECAY}; {os.cpu_count()} cores, {platform.processor() or platform.machine()}", flush=True)
    repeats, own_epochs = (2, 5) if args.quick else (1, 3)
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
    rows = [{"what": f"one epoch: {name}", "seconds": float(np.median(times)),
             "ratio": float(np.median(times)) / ours} for name, times in epochs.items()]
    sweep_epochs = args.sweep_epochs or (10 if args.quick else 30)  # 30: the default config
    serial, peaks_serial = sweep_seconds(data_args, sweep_epochs, 1)
    parallel, peaks_parallel = sweep_seconds(data_args, sweep_epochs, 2)
    rows += [
        {"what": f"4-config sweep, {sweep_epochs} epochs each, n_jobs=1", "seconds": serial, "ratio": 1.0},
        {"what": f"4-config sweep, {sweep_epochs} epochs each, n_jobs=2", "seconds": parallel,
         "ratio": parallel / serial},
    ]
    single = startup_and_memory(data_args)
    rows.append({"what": "start-up: python -m src.run to first training step", "seconds": single["startup_s"],
                 "ratio": None})
    memory = {"single run peak RSS (MB)": single["run_peak_rss_mb"],
              "sweep worker peak RSS, n_jobs=2 (MB, max)": max(peaks_parallel, default=float("nan")),
              "dataset float32 arrays (MB)": sum(a.nbytes for a in (ds.X_train, ds.X_val, ds.X_test)) / 2**20}
    print_table(rows, memory)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": ds.summary(), "rows": rows, "memory_mb": memory,
                                     "epoch_times": epochs}, indent=1))
    print(f"\nwritten: {args.json}")
    return 0


def print_table(rows: list, memory: dict) -> None:
    width = max(len(r["what"]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'seconds':>8}  ratio")
    for row in rows:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        print(f"{row['what']:<{width}}  {row['seconds']:>8.3f}  {ratio}")
    print("(epoch ratios: against netsweep float32; sweep ratio: n_jobs=2 time / n_jobs=1 time)")
    for name, value in memory.items():
        print(f"{name:<{width}}  {value:>8.0f}")


if __name__ == "__main__":
    sys.exit(main())
