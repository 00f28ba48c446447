"""Benchmark rows for packs on the CPU: the per-config epoch of K configs trained as one pack, at K = 1, 4,
16 and 48, against the same configs trained alone by `fit` (what `pack=1` runs).

    python bench/packs.py --quick         # digits, tiny: checks this file runs, not the speed
    python bench/packs.py                 # digits and Fashion-MNIST, K = 1, 4, 16, 48 (~10 minutes)

`bench/bench.py` calls `pack_rows(datasets)` with the datasets it loaded; every row is a dict in its `row`
format ({what, value, unit, ratio, against}). A pack's per-config epoch is its members' `epoch_time_s`: the
pack's training pass over the epoch divided by K (each config's share). Configs of a pack differ in learning
rate and decay as a sweep's do (the decay_lr grid's values, cycled), each with its own seed.
"""

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.nn.mlp import init_params  # noqa: E402
from src.nn.optim import build_optimizer  # noqa: E402
from src.nn.pack import Member, fit_pack  # noqa: E402
from src.nn.train import Diverged, Progress, TrainingData, TrainSettings, fit  # noqa: E402

HIDDEN, BATCH = 256, 32
GRID = [(lr, decay) for lr in (0.01, 0.03, 0.1, 0.3) for decay in (0.0, 1e-5, 1e-4, 1e-3)]  # sweeps/decay_lr.yaml
SIZES = (1, 4, 16, 48)
DECAYS = (0.0, 1e-5, 1e-4, 1e-3)  # the grid's first four configs, lr 0.01


def _row(what: str, value: float, ratio=None, against: str = "", unit: str = "s") -> dict:
    return {"what": what, "value": value, "unit": unit, "ratio": ratio, "against": against}


def _members(data: TrainingData, count: int, hidden: int, dtype) -> list[Member]:
    """`count` configs of the decay_lr grid (cycled), seeded apart as a sweep seeds them."""
    members = []
    for index in range(count):
        lr, decay = GRID[index % len(GRID)]
        init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(index).spawn(2))
        params = init_params(data.X_train.shape[1], hidden, int(data.y_train.max()) + 1, init_rng, dtype=dtype)
        members.append(Member(params, build_optimizer("sgd", params, lr=lr, decay=decay), Progress.start(shuffle_rng)))
    return members


def _per_config_epoch(history, epochs: int) -> float:
    """The median per-config epoch of a `History`, the first epoch left out when there are more (it warms
    caches up). Every member of a pack has the same `epoch_time_s`: its share of the pack's."""
    times = history.metrics["epoch_time_s"]
    return float(statistics.median(times[1:] if epochs > 1 else times))


def alone_epochs(data: TrainingData, count: int, epochs: int, hidden: int = HIDDEN, dtype=np.float32) -> list[float]:
    """Per-config epoch of each of the first `count` configs trained unpacked by `fit`, one after another."""
    times = []
    for m in _members(data, count, hidden, dtype):
        settings = TrainSettings(BATCH, epochs)
        result = fit(m.params, data, optimizer=m.optimizer, settings=settings, progress=m.progress)
        times.append(_per_config_epoch(result.history, epochs))
    return times


def pack_epoch(data: TrainingData, count: int, epochs: int, hidden: int = HIDDEN, dtype=np.float32) -> float:
    """Per-config epoch of `count` configs trained as one pack (NumPy)."""
    results = fit_pack(data, _members(data, count, hidden, dtype), settings=TrainSettings(BATCH, epochs))
    diverged = [r for r in results if isinstance(r, Diverged)]
    if diverged:  # it would have left the pack, and the rest would run faster than K configs
        raise RuntimeError(f"{len(diverged)} configs of the pack diverged: {diverged[0]}")
    return _per_config_epoch(results[0].history, epochs)


def pack_rows(datasets: dict, sizes=SIZES, epochs: int = 3, hidden: int = HIDDEN) -> list[dict]:
    """`_pack_rows` with one BLAS thread, as each of a sweep's workers trains on this 2-core machine (with two,
    the products of batch 32 are no faster and their timing twice as noisy)."""
    from threadpoolctl import threadpool_limits  # deferred: the GPU script imports this module without it

    with threadpool_limits(limits=1, user_api="blas"):
        return _pack_rows(datasets, sizes, epochs, hidden)


def _pack_rows(datasets: dict, sizes=SIZES, epochs: int = 3, hidden: int = HIDDEN) -> list[dict]:
    """Rows per dataset (name -> an object with X_train, y_train, X_val, y_val): the per-config epoch of the
    grid's first four configs alone (lr 0.01 at each decay: a decay costs two passes over the weights per step,
    so the baseline of a pack is its own mix of decays), then at each pack size K, with its ratio to the mean
    of its configs' decays alone (a pack of K cycles the grid, so K >= 4 holds the four decays equally; below
    1: the pack gains)."""
    rows = []
    for name, ds in datasets.items():
        data = TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val)
        alone = alone_epochs(data, len(DECAYS), epochs, hidden)
        for (lr, decay), seconds in zip(GRID, alone, strict=False):
            rows.append(_row(f"per-config epoch, {name}: lr={lr} decay={decay} alone (fit)", seconds))
        for count in sizes:
            seconds, baseline = pack_epoch(data, count, epochs, hidden), statistics.mean(alone[: min(count, 4)])
            rows.append(_row(f"per-config epoch, {name}: pack of K={count}", seconds, seconds / baseline, "x alone"))
    return rows


def _datasets(quick: bool) -> dict:
    # deferred: the loaders import Hydra's error types; the functions above need only src/nn
    from src.config.schema import DataName, DigitsConfig, IdxConfig
    from src.data.loader import load_dataset

    digits = load_dataset(DigitsConfig(name=DataName.digits, val_fraction=0.15, test_fraction=0.2), seed=0)
    if quick:
        return {"digits": digits}
    fashion = IdxConfig(
        name=DataName.fashion_mnist,
        root="/usr/share/datasets/fashion-mnist",
        val_fraction=0.15,
        download=False,
        cache_dir="~/.cache/netsweep",
    )
    return {"digits": digits, "Fashion-MNIST": load_dataset(fashion, seed=0)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, K = 1 and 4, hidden 32, 2 epochs")
    args = parser.parse_args(argv)
    quick = {"sizes": (1, 4), "epochs": 2, "hidden": 32} if args.quick else {}
    rows = pack_rows(_datasets(args.quick), **quick)
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        ratio = f"{r['ratio']:.2f} {r['against']}" if r["ratio"] is not None else ""
        print(f"{r['what']:<{width}}  {r['value'] * 1e3:10.2f} ms  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
