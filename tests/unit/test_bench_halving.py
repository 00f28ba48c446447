"""bench/halving.py and bench/optuna_peer.py: both sides of a row train the same grid, and each row function
runs in its quick mode and returns rows that say what they measured (correctness only, never the speed)."""

import math
import shutil

import pytest

from bench import halving, optuna_peer

ROW_KEYS = {"what", "value", "unit", "ratio", "against"}


def peer_space(grid: halving.Grid) -> dict:
    """The configs bench/optuna_peer.py's study searches, given the arguments halving.py passes it."""
    return optuna_peer.search_space(optuna_peer.parser().parse_args([*grid.peer_args(), "--storage", "sqlite://"]))


def test_the_peer_trains_the_grid_the_cli_sweeps():
    study = halving.Grid("fashion_mnist", 30, seeds="0,1,2")
    assert study.configs == 48
    assert study.overrides()[:4] == ["-m", "+sweep=decay_lr", "seed=0,1,2", "data=fashion_mnist"]
    space = peer_space(study)
    assert space == {"lr": [0.01, 0.03, 0.1, 0.3], "decay": [0.0, 1e-5, 1e-4, 1e-3], "seed": [0, 1, 2]}
    quick = halving.Grid("digits", 3, seeds="0,1", **halving.QUICK)
    assert quick.configs == 4 * 2 and "+sweep=decay_lr" not in quick.overrides()
    assert {"optimizer.lr=0.1,0.3", "model.decay=0,1e-4", "seed=0,1", "epochs=3"} <= set(quick.overrides())
    assert math.prod(len(values) for values in peer_space(quick).values()) == quick.configs


@pytest.fixture(scope="module")
def bench():
    from bench.bench import Bench

    made = Bench([])
    yield made
    shutil.rmtree(made.scratch, ignore_errors=True)  # its scratch folder and every run in it


def _check(rows: list[dict], count: int) -> dict:
    assert len(rows) == count and all(set(row) == ROW_KEYS for row in rows)
    assert all(isinstance(row["value"], int | float) and row["value"] >= 0 for row in rows)
    return {row["what"]: row for row in rows}


@pytest.mark.slow
def test_pack_grid_rows_quick(bench):
    rows = _check(halving.pack_grid_rows(bench, quick=True), 3)
    (apart,) = [r for what, r in rows.items() if "largest difference" in what]
    assert apart["value"] == 0.0  # NumPy: a packed config gives what it gives alone, bit for bit
    (ratio,) = [r["ratio"] for r in rows.values() if r["ratio"] is not None]
    assert ratio > 0


@pytest.mark.slow
def test_halving_grid_rows_quick(bench):
    rows = _check(halving.halving_grid_rows(bench, quick=True), 6)
    epochs = {what: r for what, r in rows.items() if r["unit"] == "epochs"}
    full, sha = (r for what, r in sorted(epochs.items(), key=lambda item: "sha" in item[0]))
    assert full["value"] == 4 * 4 and full["ratio"] == 1.0
    assert 4 <= sha["value"] < full["value"]  # every config trains to the first rung, not all train on
    winner = next(r for what, r in rows.items() if "winner" in what)
    assert 0 < winner["value"] <= 1 and winner["ratio"] <= 1e-12  # no config beats the grid's best


@pytest.mark.slow
def test_study_rows_quick(bench):
    rows = _check(halving.study_rows(bench, quick=True), 8)
    epochs = [r for r in rows.values() if r["unit"] == "epochs"]
    assert len(epochs) == 2 and all(0 < r["ratio"] <= 1.5 for r in epochs)  # the peer may rerun a grid point
    ours = next(r for what, r in rows.items() if "netsweep prune=sha: epochs" in what)
    assert 8 <= ours["value"] < 8 * 3
    assert all(0 < r["value"] <= 1 for r in rows.values() if r["unit"] == "acc")


def test_the_fashion_sweep_is_one_pack_of_a_wide_momentum_net(loader):
    """sweeps/fashion.yaml composes, trains the wide net with momentum on Fashion-MNIST, and all its configs can
    share one pack (so pack=auto packs them; they differ only in what a pack holds per config)."""
    from hydra import compose

    from src.sweep.packing import pack_key

    swept = compose("config", overrides=["+sweep=fashion"], return_hydra_config=True)
    params = {key: str(values).split(",") for key, values in swept.hydra.sweeper.params.items()}
    assert swept.data.name == "fashion_mnist" and swept.optimizer.name == "momentum"
    assert swept.model.hidden_size > 256 and swept.epochs > 30
    assert swept.hydra.launcher.prune_min_epochs == 1 and swept.hydra.launcher.prune_factor == 3
    keys = {
        pack_key(compose("config", overrides=["+sweep=fashion", f"optimizer.lr={lr}", f"model.decay={decay}"]))
        for lr in params["optimizer.lr"]
        for decay in params["model.decay"]
    }
    assert len(params["optimizer.lr"]) * len(params["model.decay"]) == 9 and len(keys) == 1
