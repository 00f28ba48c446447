"""The peer of netsweep's 48-config study: an Optuna study of the same configs, as a user would write it.

    python bench/optuna_peer.py --storage sqlite:///optuna.db     # decay_lr x seeds 0-2, Fashion-MNIST, 30 epochs
    python bench/optuna_peer.py --storage sqlite:///o.db --data digits --epochs 3 --seeds 0 --lr 0.1,0.3

Optuna's GridSampler over lr x decay x seed, its SuccessiveHalvingPruner (min_resource=1, reduction_factor=3),
and `--workers` worker processes (two by default) that share one SQLite storage, each with one BLAS thread.
A trial trains with netsweep's own loop (`src.nn.train.fit`, the net and seeding a netsweep run has), and its
`on_epoch_end` reports the epoch's val_ce to the trial and raises `optuna.TrialPruned` when the pruner says so.
Nothing is recorded beyond Optuna's storage (a trial's best val_acc is a user attribute there). As the grid
runs out, two workers may each run the last grid point left: such a trial counts in the epochs trained.

It needs Optuna 3 or later (SQLite storage under SQLAlchemy 2; the 2.x that hydra-optuna-sweeper pins cannot
create one): bench/halving.py `optuna_python` makes an environment with Optuna 5 for it. Prints one JSON line:
the trials, the epochs each trained, and the best trial.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.checks import check_arrays  # noqa: E402
from src.data.dataset import split  # noqa: E402
from src.data.sources import read_source  # noqa: E402
from src.nn.mlp import init_params  # noqa: E402
from src.nn.optim import build_optimizer  # noqa: E402
from src.nn.train import Callbacks, Diverged, Progress, TrainingData, TrainSettings, fit  # noqa: E402

STUDY = "netsweep-peer"
FASHION = "/usr/share/datasets/fashion-mnist"
HIDDEN, BATCH, VAL_FRACTION = 256, 32, 0.15  # netsweep's defaults (conf/model/mlp.yaml, conf/optimizer/sgd.yaml)
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def search_space(args) -> dict:
    return {"lr": numbers(args.lr), "decay": numbers(args.decay), "seed": [int(s) for s in args.seeds.split(",")]}


def sampler_and_pruner(args):
    import optuna

    sampler = optuna.samplers.GridSampler(search_space(args), seed=0)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return sampler, pruner


class Splits:
    """The data decoded once per worker, split per seed as netsweep splits it (src/data/dataset.py)."""

    def __init__(self, data: str):
        options = {"test_fraction": 0.2} if data == "digits" else {"root": FASHION, "download": False, "cache_dir": ""}
        raw, origin, pixel_max = read_source(data, options)
        self.name, self.decoded, self.by_seed = data, check_arrays(raw, origin, pixel_max), {}

    def __call__(self, seed: int) -> tuple[TrainingData, int]:
        if seed not in self.by_seed:
            ds = split(self.decoded, self.name, VAL_FRACTION, seed)
            self.by_seed[seed] = (TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val), ds.num_classes)
        return self.by_seed[seed]


def objective(splits: Splits, epochs: int, space: dict):
    import optuna

    def train(trial) -> float:
        lr, decay = trial.suggest_categorical("lr", space["lr"]), trial.suggest_categorical("decay", space["decay"])
        seed = trial.suggest_categorical("seed", space["seed"])
        data, classes = splits(seed)
        init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        params = init_params(data.X_train.shape[1], HIDDEN, classes, init_rng, dtype=np.float32)

        def on_epoch_end(epoch: int, metrics: dict) -> None:
            trial.report(metrics["val_ce"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = fit(
            params,
            data,
            optimizer=build_optimizer("sgd", params, lr=lr, decay=decay),
            settings=TrainSettings(batch_size=BATCH, epochs=epochs),
            progress=Progress.start(shuffle_rng),
            callbacks=Callbacks(on_epoch_end=on_epoch_end),
        )
        history = result.history.metrics  # scored as a netsweep run is (src/experiment/runner.py final_metrics)
        trial.set_user_attr("best_val_acc", max(history["val_acc"]))
        return min(history["val_ce"])  # netsweep's objective, best_val_ce

    return train


def work(args) -> None:
    """One worker process: trials from the shared study until the grid is done."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = sampler_and_pruner(args)
    study = optuna.load_study(study_name=STUDY, storage=args.storage, sampler=sampler, pruner=pruner)
    study.optimize(objective(Splits(args.data), args.epochs, search_space(args)), catch=(Diverged,))


def summary(args, seconds: float) -> dict:
    """The trials as the storage holds them: epochs each trained (steps it reported), states, the best."""
    import optuna

    trials = optuna.load_study(study_name=STUDY, storage=args.storage).get_trials(deepcopy=False)
    epochs = [len(t.intermediate_values) for t in trials]
    by_config: dict[tuple, dict[int, int]] = {}  # (lr, decay) -> seed -> epochs (a grid point run twice: its most)
    for trial, trained in zip(trials, epochs, strict=True):
        seeds = by_config.setdefault((trial.params["lr"], trial.params["decay"]), {})
        seeds[trial.params["seed"]] = max(trained, seeds.get(trial.params["seed"], 0))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and math.isfinite(t.value)]
    best = min(complete, key=lambda t: t.value) if complete else None
    space = search_space(args)
    return {
        "optuna": optuna.__version__,
        "seconds": seconds,
        "configs": len(space["lr"]) * len(space["decay"]) * len(space["seed"]),
        "trials": len(trials),  # more than the configs: workers ran a grid point twice as the grid ran out
        "states": {state.name: sum(t.state == state for t in trials) for state in {t.state for t in trials}},
        "epochs_trained": sum(epochs),
        "configs_with_seeds_stopped_apart": sum(len(set(seeds.values())) > 1 for seeds in by_config.values()),
        "best": None if best is None else {**best.params, "val_ce": best.value, **best.user_attrs},
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="an SQLite URL, e.g. sqlite:///optuna.db (a new file)")
    parser.add_argument("--data", default="fashion_mnist", choices=("fashion_mnist", "digits"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", default="0.01,0.03,0.1,0.3")  # sweeps/decay_lr.yaml
    parser.add_argument("--decay", default="0,1e-5,1e-4,1e-3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # run as one of the workers
    return parser


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        work(args)
        return 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    sampler, pruner = sampler_and_pruner(args)
    optuna.create_study(study_name=STUDY, storage=args.storage, sampler=sampler, pruner=pruner, direction="minimize")
    command = [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:]), "--worker"]
    workers = [subprocess.Popen(command, env={**os.environ, **ONE_THREAD}) for _ in range(args.workers)]
    failed = [w.args for w in workers if w.wait() != 0]
    seconds = time.perf_counter() - started
    if failed:
        print(f"optuna_peer: a worker failed: {' '.join(failed[0])}", file=sys.stderr)
        return 1
    print(json.dumps(summary(args, seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
