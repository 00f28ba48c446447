"""GPU rows for packs: the per-config epoch of K configs trained as one pack on CuPy and on PyTorch, against
PyTorch eager training the same net one config at a time on the same device. Imports only src/nn and its own
IDX reader, so it runs where MLflow and Hydra are not installed (`pip install numpy array-api-compat torch`).

    python bench/gpu.py                          # Fashion-MNIST on cuda, K = 1, 16, 48: torch and cupy if installed
    python bench/gpu.py --study                  # also the 48-config study (decay_lr x seeds 0-2, 30 epochs)
    python bench/gpu.py --device cpu --quick     # the same code on the CPU (NumPy; PyTorch if installed), tiny

Per-config epoch: a pack's members' `epoch_time_s` (the pack's training pass over the epoch, divided by K;
the pass ends by copying its costs to the host, so the device has finished), the median over the epochs after
the first. PyTorch eager: one config's training pass, synchronised at its end. It also prints how far the
device's metrics are from NumPy's for the same config (`fit` on the CPU): the float32 tolerance of a backend.
"""

import argparse
import gzip
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.nn.backend import Backend, backend  # noqa: E402
from src.nn.mlp import init_params  # noqa: E402
from src.nn.optim import build_optimizer  # noqa: E402
from src.nn.pack import Member, fit_pack  # noqa: E402
from src.nn.train import EPOCH_METRICS, Diverged, Progress, TrainingData, TrainSettings, fit  # noqa: E402

HIDDEN, BATCH, LR, DECAY = 256, 32, 0.1, 1e-4
GRID = [(lr, decay) for lr in (0.01, 0.03, 0.1, 0.3) for decay in (0.0, 1e-5, 1e-4, 1e-3)]  # sweeps/decay_lr.yaml
FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Setup:
    """What every row trains: the data, the net's width, epochs per measurement, the device."""

    data: TrainingData
    hidden: int
    epochs: int
    device: str


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as an array of its dimensions."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def split(X: np.ndarray, y: np.ndarray, seed: int, val_fraction: float = 0.15) -> TrainingData:
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    val, train = order[:n_val], order[n_val:]
    return TrainingData(X[train], y[train], X[val], y[val])


def fashion(root: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(next(root.glob("train-images-idx3-ubyte*")))
    labels = read_idx(next(root.glob("train-labels-idx1-ubyte*"))).astype(np.int64)
    return (images.reshape(len(images), -1) / 255).astype(np.float32), labels


def tiny() -> tuple[np.ndarray, np.ndarray]:
    """600 rows of 64 features in 10 blobs: a few milliseconds an epoch."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=600)
    X = rng.normal(size=(10, 64))[y] + rng.normal(scale=2.0, size=(600, 64))
    return ((X - X.min()) / (X.max() - X.min())).astype(np.float32), y


def members(data: TrainingData, configs: list, hidden: int) -> list[Member]:
    """One member per (lr, decay, seed), seeded as a sweep seeds its configs."""
    out = []
    for lr, decay, seed in configs:
        init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        params = init_params(data.X_train.shape[1], hidden, 10, init_rng, dtype=np.float32)
        out.append(Member(params, build_optimizer("sgd", params, lr=lr, decay=decay), Progress.start(shuffle_rng)))
    return out


def pack_epoch(setup: Setup, be: Backend, count: int) -> tuple[float, list]:
    """Per-config epoch of a pack of `count` configs (the assignment's lr and decay, seeds 0..count-1), and
    the outcomes."""
    configs = [(LR, DECAY, seed) for seed in range(count)]
    results = fit_pack(
        setup.data, members(setup.data, configs, setup.hidden), settings=TrainSettings(BATCH, setup.epochs), backend=be
    )
    times = results[0].history.metrics["epoch_time_s"]
    return float(statistics.median(times[1:] if len(times) > 1 else times)), results


def torch_eager_epoch(setup: Setup) -> float:
    """PyTorch eager, one config: Linear-ReLU-Linear, cross-entropy, SGD with the decay's gradient 2·c·W on the
    weights only, batch 32, data on the device once, a new order every epoch; the median epoch after the first."""
    import torch  # deferred: optional (the eager baseline)

    device = torch.device(setup.device)
    torch.manual_seed(0)
    X = torch.as_tensor(setup.data.X_train, device=device)
    y = torch.as_tensor(np.asarray(setup.data.y_train, dtype=np.int64), device=device)
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], setup.hidden), torch.nn.ReLU(), torch.nn.Linear(setup.hidden, 10)
    ).to(device)
    weights, biases = [model[0].weight, model[2].weight], [model[0].bias, model[2].bias]
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 2 * DECAY}, {"params": biases, "weight_decay": 0.0}], lr=LR
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(setup.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(y), device=device)
        for start in range(0, len(y), BATCH):
            index = order[start : start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(X[index]), y[index]).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return float(statistics.median(times[1:] if len(times) > 1 else times))


def distance_from_numpy(setup: Setup, packed) -> dict:
    """The largest difference, per metric over the epochs, between a pack's first member and the same config
    trained alone by `fit` on NumPy."""
    (m,) = members(setup.data, [(LR, DECAY, 0)], setup.hidden)
    alone = fit(
        m.params, setup.data, optimizer=m.optimizer, settings=TrainSettings(BATCH, setup.epochs), progress=m.progress
    )
    return {
        name: max(abs(a - b) for a, b in zip(alone.history.metrics[name], packed.history.metrics[name], strict=True))
        for name in EPOCH_METRICS[:-1]
    }


def study_seconds(X: np.ndarray, y: np.ndarray, be: Backend, hidden: int, epochs: int) -> float:
    """Wall time of the 48-config study (the decay_lr grid with seeds 0, 1, 2) as three packs of 16: each seed
    splits the data its own way, so its configs pack together."""
    started = time.perf_counter()
    for seed in range(3):
        data = split(X, y, seed)
        outcomes = fit_pack(
            data,
            members(data, [(lr, d, seed) for lr, d in GRID], hidden),
            settings=TrainSettings(BATCH, epochs),
            backend=be,
        )
        assert len(outcomes) == len(GRID)
    return time.perf_counter() - started


def available(names: list, device: str) -> list:
    """The backends of `names` that import here, on `device`."""
    found = []
    for name in names:
        try:
            found.append((name, backend(name, device)))
        except (ModuleNotFoundError, ValueError) as missing:
            print(f"skipping {name}: {missing}")
    return found


def run(setup: Setup, sizes: list, study: tuple | None) -> list:
    """Rows (what, seconds, speed-up over the baseline) and the printed tolerances."""
    names = ["numpy", "torch"] if setup.device == "cpu" else ["torch", "cupy"]
    backends = available(names, setup.device)
    rows = []
    try:
        baseline, label = torch_eager_epoch(setup), f"PyTorch eager {setup.device}, one config"
    except ImportError:
        (m,) = members(setup.data, [(LR, DECAY, 0)], setup.hidden)
        result = fit(
            m.params,
            setup.data,
            optimizer=m.optimizer,
            settings=TrainSettings(BATCH, setup.epochs),
            progress=m.progress,
        )
        baseline, label = (
            float(statistics.median(result.history.metrics["epoch_time_s"][1:] or [0.0])),
            "netsweep fit (NumPy), one config",
        )
    rows.append((label, baseline, 1.0))
    for name, be in backends:
        for count in sizes:
            seconds, results = pack_epoch(setup, be, count)
            if any(isinstance(r, Diverged) for r in results):
                raise RuntimeError(f"a config diverged on {name}")
            rows.append((f"pack on {name} {setup.device}, K={count}", seconds, baseline / seconds))
        gaps = distance_from_numpy(setup, results[0])
        print(f"{name} {setup.device} against NumPy, largest difference per metric: "
              + ", ".join(f"{metric} {gap:.2e}" for metric, gap in gaps.items()))  # fmt: skip
        if study is not None:
            rows.append(
                (
                    f"48-config study on {name} {setup.device}, 3 packs of 16",
                    study_seconds(*study, be, setup.hidden, 30),
                    None,
                )
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="600 made-up rows, hidden 32, K = 1 and 4, 2 epochs")
    parser.add_argument("--study", action="store_true", help="also the 48-config study's training time")
    parser.add_argument("--data", type=Path, default=FASHION, help="a folder holding Fashion-MNIST's IDX files")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is left out)")
    args = parser.parse_args(argv)
    X, y = tiny() if args.quick else fashion(args.data)
    hidden, sizes, epochs = (32, [1, 4], 2) if args.quick else (HIDDEN, [1, 16, 48], args.epochs)
    setup = Setup(split(X, y, 0), hidden, epochs, args.device)
    rows = run(setup, sizes, (X, y) if args.study else None)
    width = max(len(what) for what, _, _ in rows)
    print(f"{'per-config epoch':<{width}}  {'seconds':>10}  speed-up")
    for what, seconds, speedup in rows:
        print(f"{what:<{width}}  {seconds:10.4f}  " + (f"{speedup:.1f}x" if speedup is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
