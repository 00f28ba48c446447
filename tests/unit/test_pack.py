"""Packs: a config trained in a pack gets what it gets alone, each member ends alone, checkpoints are an
unpacked run's.

Tolerance, measured: on NumPy (and on array-api-strict, tests/unit/test_array_api.py) every metric of a
config trained in a pack equals what `fit` gives it alone exactly (a difference of 0 in train_loss,
train_acc, val_loss, val_acc and val_ce, in float32 and in float64, for sgd, momentum and adam, and the same
best epoch, best parameters and outcome): each slice of a batched product is the same BLAS call as the
unbatched product, and every reduction runs over the same axis in the same order. So these tests assert
equality, not closeness. Another library's BLAS sums in another order: on PyTorch 2.13 (CPU), digits, hidden
256, 10 epochs, the 11 configs of CONFIGS, the largest differences from NumPy were 1.9e-4 in train_loss,
6.5e-4 in val_loss and val_ce (relative 6e-3: float32 rounding, grown over 3,800 steps), 1.6e-3 in train_acc
(two images), 0 in val_acc, with the same best epochs and outcomes; after one epoch they are ~1e-7
(tests/unit/test_array_api.py checks PyTorch where it is installed). bench/gpu.py prints them on a GPU.
"""

import copy
from pathlib import Path

import numpy as np
import pytest

import src.nn.pack as pack_module
from src.config.schema import DigitsConfig
from src.data.idx import load_idx_folder
from src.data.loader import load_dataset
from src.experiment import checkpoints
from src.nn import sliced
from src.nn.backend import backend
from src.nn.mlp import init_params
from src.nn.optim import build_optimizer
from src.nn.pack import Member, fit_pack
from src.nn.train import EPOCH_METRICS, Callbacks, Diverged, FitResult, Progress, TrainingData, TrainSettings, fit

SAME = EPOCH_METRICS[:-1]  # all but epoch_time_s, which is wall time
HIDDEN = 32
# Mixed hyperparameters per optimizer (3 to 4 configs each), decays 0 and not 0 side by side.
CONFIGS = {
    "sgd": [dict(lr=0.1, decay=1e-4), dict(lr=0.05, decay=0.0), dict(lr=0.3, decay=1e-3), dict(lr=0.02, decay=1e-2)],
    "momentum": [
        dict(lr=0.05, decay=1e-4, momentum=0.9),
        dict(lr=0.01, decay=0.0, momentum=0.5),
        dict(lr=0.02, decay=1e-3, momentum=0.0),
    ],
    "adam": [
        dict(lr=1e-3, decay=1e-4),
        dict(lr=3e-3, decay=0.0, beta1=0.8, beta2=0.99, eps=1e-6),
        dict(lr=5e-4, decay=1e-3, beta2=0.9),
        dict(lr=2e-3, decay=0.0),
    ],
}


@pytest.fixture(params=["batched", "sliced"])
def numpy_pass(request, monkeypatch):
    """Each NumPy pack test runs on both of a NumPy pack's training passes: the batched products of
    src/nn/packed.py and one config at a time (src/nn/sliced.py), whichever the net's size would choose."""
    monkeypatch.setattr(sliced, "SLICED_FROM_WEIGHTS", 0 if request.param == "sliced" else 1 << 60)
    return request.param


@pytest.fixture(scope="module")
def digits() -> TrainingData:
    ds = load_dataset(DigitsConfig(name="digits", val_fraction=0.15, test_fraction=0.2), 0)
    return TrainingData(ds.X_train, ds.y_train, ds.X_val, ds.y_val)


def member(data, seed, name, dtype=np.float32, callbacks=None, hidden=HIDDEN, **hyper) -> Member:
    """A config's fit as src/experiment/runner.py seeds it: its own initial weights and shuffling."""
    init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    params = init_params(data.X_train.shape[1], hidden, 10, init_rng, dtype=dtype)
    optimizer = build_optimizer(name, params, **hyper)
    return Member(params, optimizer, Progress.start(shuffle_rng), callbacks or Callbacks())


def alone(data, settings, m: Member):
    """What `fit` gives the member unpacked: its FitResult, or the Diverged it raises."""
    try:
        return fit(m.params, data, optimizer=m.optimizer, settings=settings, progress=m.progress, callbacks=m.callbacks)
    except Diverged as stop:
        return stop


def assert_same(packed, unpacked):
    """The same outcome, metrics, best epoch and best parameters, bit for bit."""
    assert type(packed) is type(unpacked)
    for name in SAME:
        assert packed.history.metrics[name] == unpacked.history.metrics[name], name
    if isinstance(unpacked, Diverged):
        assert (packed.epoch, packed.step, str(packed)) == (unpacked.epoch, unpacked.step, str(unpacked))
        return
    assert (packed.best_epoch, packed.stopped) == (unpacked.best_epoch, unpacked.stopped)
    for name, value in unpacked.params.items():
        assert packed.params[name].dtype == value.dtype and np.array_equal(packed.params[name], value), name


@pytest.mark.parametrize("schedule", [None, "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pack_members_match_their_unpacked_fits(digits, name, dtype, numpy_pass, schedule):
    settings = TrainSettings(batch_size=32, epochs=3, schedule=schedule, lr_final=0.1)
    packed = [member(digits, seed, name, dtype, **hyper) for seed, hyper in enumerate(CONFIGS[name])]
    unpacked = [member(digits, seed, name, dtype, **hyper) for seed, hyper in enumerate(CONFIGS[name])]
    results = fit_pack(digits, packed, settings=settings)
    for p, u, result in zip(packed, unpacked, results, strict=True):
        assert_same(result, alone(digits, settings, u))
        for key, value in u.params.items():  # the caller's parameters and optimizer end as fit leaves them
            assert np.array_equal(p.params[key], value), key
        theirs = u.optimizer.state()
        assert all(np.array_equal(value, theirs[key]) for key, value in p.optimizer.state().items())
    assert len({r.history.metrics["val_loss"][-1] for r in results}) == len(results)  # the configs differ


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_pack_of_one_is_fit_bit_for_bit(digits, name, dtype, numpy_pass):
    settings = TrainSettings(batch_size=50, epochs=2)  # 50: the epoch's last batch is a short one
    (result,) = fit_pack(digits, [member(digits, 7, name, dtype, **CONFIGS[name][0])], settings=settings)
    assert_same(result, alone(digits, settings, member(digits, 7, name, dtype, **CONFIGS[name][0])))


def test_nesterov_packs_alone_and_never_with_heavy_ball(digits, numpy_pass):
    settings = TrainSettings(batch_size=32, epochs=2)
    hypers = [
        dict(lr=0.05, decay=1e-4, momentum=0.9, nesterov=True),
        dict(lr=0.02, decay=0.0, momentum=0.8, nesterov=True),
    ]
    results = fit_pack(digits, [member(digits, s, "momentum", **h) for s, h in enumerate(hypers)], settings=settings)
    for seed, (hyper, result) in enumerate(zip(hypers, results, strict=True)):
        assert_same(result, alone(digits, settings, member(digits, seed, "momentum", **hyper)))
    mixed = [member(digits, 0, "momentum", **hypers[0]), member(digits, 1, "momentum", lr=0.1, decay=0.0)]
    with pytest.raises(ValueError, match="all Nesterov or none"):
        fit_pack(digits, mixed, settings=settings)


def _stop_at(epoch):
    return lambda at, metrics: f"pruned at epoch {at}" if at == epoch else None


@pytest.mark.parametrize("where", ["numpy", "sliced", "array_api_strict"])
def test_one_member_diverges_one_is_pruned_one_runs_out_of_patience_the_rest_finish(digits, monkeypatch, where):
    settings = TrainSettings(batch_size=32, epochs=8, patience=2)
    hypers = [dict(lr=0.1, decay=1e-4), dict(lr=80.0, decay=0.0), dict(lr=0.05, decay=1e-4), dict(lr=1.5, decay=0.0)]
    hooks = [None, None, _stop_at(2), None]

    def build():
        return [member(digits, s, "sgd", callbacks=Callbacks(on_epoch_end=hooks[s]), **h) for s, h in enumerate(hypers)]

    sizes = []  # the pack's size at every step: ended members leave it
    steps = -(-len(digits.y_train) // 32)
    if where == "sliced":  # one config's epoch after another: the pack's size is its epoch's count of orders
        monkeypatch.setattr(sliced, "SLICED_FROM_WEIGHTS", 0)
        real_epoch = sliced.train_epoch
        monkeypatch.setattr(
            sliced,
            "train_epoch",
            lambda *a: sizes.extend([len(a[2])] * steps) or real_epoch(*a),  # a[2]: orders
        )
    else:
        real = pack_module.data_cost_grad
        monkeypatch.setattr(
            pack_module, "data_cost_grad", lambda p, b, s: sizes.append(p["W1"].shape[0]) or real(p, b, s)
        )
    results = fit_pack(digits, build(), settings=settings, backend=backend("numpy" if where == "sliced" else where))
    monkeypatch.undo()
    for result, expected in zip(results, [alone(digits, settings, m) for m in build()], strict=True):
        assert_same(result, expected)
    finished, diverged, pruned, impatient = results
    assert isinstance(diverged, Diverged) and diverged.epoch == 1 and diverged.history.epochs == 0
    assert pruned.stopped == "pruned at epoch 2" and pruned.epochs_trained == 2
    assert impatient.stopped.startswith("no lower validation loss for 2 epochs") and impatient.epochs_trained < 8
    assert finished.stopped is None and finished.epochs_trained == 8
    assert sizes[:steps] == [4] * steps and sizes[steps : 2 * steps] == [3] * steps and sizes[-1] == 1


def _capture(into):
    """An on_progress that keeps what a checkpoint of the member would hold after each epoch."""

    def hook(m):
        def save(progress):  # copied, as saving it to a file copies it: the arrays train on in place
            saved = checkpoints.snapshot(m.params, m.optimizer, progress, "config")
            into.append(
                checkpoints.Checkpoint({k: np.array(v) for k, v in saved.arrays.items()}, copy.deepcopy(saved.meta))
            )

        return save

    return hook


def _same_snapshot(a, b):
    assert a.meta == b.meta
    assert sorted(a.arrays) == sorted(b.arrays)
    for name, value in a.arrays.items():
        if name != "history.epoch_time_s":  # wall time
            assert np.array_equal(value, b.arrays[name]), name


@pytest.mark.parametrize("schedule", [None, "linear"])  # a schedule's factor follows the epoch across a resume
@pytest.mark.parametrize(
    "name,where",
    [("momentum", "numpy"), ("adam", "numpy"), ("adam", "array_api_strict")]
    + [("sgd", "sliced"), ("momentum", "sliced"), ("adam", "sliced")],
)
def test_a_members_checkpoints_are_an_unpacked_runs_and_resume_alone_or_in_a_pack(
    digits, monkeypatch, name, where, schedule
):
    if where == "sliced":  # one config at a time, on views of the pack's stacked state
        monkeypatch.setattr(sliced, "SLICED_FROM_WEIGHTS", 0)
        where = "numpy"
    settings = TrainSettings(batch_size=32, epochs=4, schedule=schedule)
    hypers = CONFIGS[name][:3]
    packed_saves, unpacked_saves = [[] for _ in hypers], [[] for _ in hypers]
    members = [member(digits, s, name, **h) for s, h in enumerate(hypers)]
    for m, saves in zip(members, packed_saves, strict=True):
        m.callbacks = Callbacks(on_progress=_capture(saves)(m))
    unbroken = fit_pack(digits, members, settings=settings, backend=backend(where))
    for seed, hyper in enumerate(hypers):
        m = member(digits, seed, name, **hyper)
        m.callbacks = Callbacks(on_progress=_capture(unpacked_saves[seed])(m))
        alone(digits, settings, m)
        assert len(packed_saves[seed]) == len(unpacked_saves[seed]) == 3  # after epochs 1, 2 and 3
        for a, b in zip(packed_saves[seed], unpacked_saves[seed], strict=True):
            _same_snapshot(a, b)

    def resumed(seed):  # from its checkpoint after epoch 2, as the runner restores one
        m = member(digits, seed, name, **hypers[seed])
        m.progress = checkpoints.restore(packed_saves[seed][1], m.params, m.optimizer)
        return m

    assert_same(alone(digits, settings, resumed(0)), unbroken[0])
    in_a_pack = fit_pack(digits, [resumed(1), resumed(2)], settings=settings, backend=backend(where))
    for result, expected in zip(in_a_pack, unbroken[1:], strict=True):
        assert_same(result, expected)


def test_members_of_a_pack_share_an_epoch_an_optimizer_and_a_net(digits):
    settings = TrainSettings(batch_size=32, epochs=2)
    ahead = member(digits, 1, "sgd", lr=0.1, decay=0.0)
    fit_pack(digits, [ahead], settings=TrainSettings(batch_size=32, epochs=1))
    with pytest.raises(ValueError, match=r"stand at one epoch, not at epochs \[0, 1\]"):
        fit_pack(digits, [member(digits, 0, "sgd", lr=0.1, decay=0.0), ahead], settings=settings)
    sgd = member(digits, 0, "sgd", lr=0.1, decay=0.0)
    with pytest.raises(ValueError, match="of one optimizer, not adam and sgd"):
        fit_pack(digits, [sgd, member(digits, 1, "adam", lr=0.1, decay=0.0)], settings=settings)
    with pytest.raises(ValueError, match="one net"):
        fit_pack(digits, [sgd, member(digits, 1, "sgd", hidden=8, lr=0.1, decay=0.0)], settings=settings)
    stepping = member(digits, 1, "sgd", callbacks=Callbacks(on_step=lambda epoch, step: None), lr=0.1, decay=0.0)
    with pytest.raises(ValueError, match="give on_step to fit_pack"):
        fit_pack(digits, [sgd, stepping], settings=settings)
    with pytest.raises(ValueError, match="at least one config"):
        fit_pack(digits, [], settings=settings)


def test_a_pack_that_has_trained_all_its_epochs_returns_where_it_stands(digits):
    settings = TrainSettings(batch_size=32, epochs=1)
    m = member(digits, 0, "sgd", lr=0.1, decay=0.0)
    (first,) = fit_pack(digits, [m], settings=settings)
    (again,) = fit_pack(digits, [m], settings=settings)
    assert isinstance(again, FitResult) and again.history.epochs == 1 and again.best_epoch == first.best_epoch


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fashion() -> TrainingData:
    """3000 Fashion-MNIST training images and 1000 others to validate on, scaled to [0, 1]."""
    raw = load_idx_folder(FASHION)
    X, y = (raw["X_train"].reshape(len(raw["X_train"]), -1) / 255).astype(np.float32), raw["y_train"]
    return TrainingData(X[:3000], y[:3000], X[50000:51000], y[50000:51000])


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="needs dataset-fashion-mnist")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fashion_mnist_members_match_their_unpacked_fits(fashion, name):
    settings = TrainSettings(batch_size=32, epochs=2)
    hypers = CONFIGS[name][:3]
    results = fit_pack(
        fashion, [member(fashion, s, name, hidden=64, **h) for s, h in enumerate(hypers)], settings=settings
    )
    for seed, (hyper, result) in enumerate(zip(hypers, results, strict=True)):
        assert_same(result, alone(fashion, settings, member(fashion, seed, name, hidden=64, **hyper)))


def test_the_pack_benchmarks_run_on_the_cpu(digits, capsys):
    """bench/packs.py's rows and bench/gpu.py's CPU fallback, tiny: they run and say what they measured (not
    how fast: timing here is meaningless)."""
    from bench import gpu, packs

    rows = packs.pack_rows({"digits": digits}, sizes=(1, 2), epochs=1, hidden=8)
    assert [r["what"] for r in rows] == [
        "per-config epoch, digits: lr=0.01 decay=0.0 alone (fit)",
        "per-config epoch, digits: lr=0.01 decay=1e-05 alone (fit)",
        "per-config epoch, digits: lr=0.01 decay=0.0001 alone (fit)",
        "per-config epoch, digits: lr=0.01 decay=0.001 alone (fit)",
        "per-config epoch, digits: pack of K=1",
        "per-config epoch, digits: pack of K=2",
    ]
    assert all(r["value"] > 0 and r["unit"] == "s" for r in rows) and rows[4]["against"] == "x alone"
    assert rows[4]["ratio"] == pytest.approx(rows[4]["value"] / rows[0]["value"])  # K=1 against its config
    assert rows[5]["ratio"] == pytest.approx(rows[5]["value"] * 2 / (rows[0]["value"] + rows[1]["value"]))
    assert gpu.main(["--device", "cpu", "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "pack on numpy cpu, K=4" in printed
    assert "numpy cpu against NumPy, largest difference per metric: train_loss 0.00e+00" in printed


def test_the_packs_on_step_sees_every_step_as_fits_does(digits):
    settings = TrainSettings(batch_size=64, epochs=2)
    packed, unpacked = [], []
    fit_pack(
        digits,
        [member(digits, s, "sgd", lr=0.1, decay=0.0) for s in range(3)],
        settings=settings,
        on_step=lambda epoch, step: packed.append((epoch, step)),
    )
    m = member(digits, 0, "sgd", lr=0.1, decay=0.0)
    m.callbacks = Callbacks(on_step=lambda epoch, step: unpacked.append((epoch, step)))
    alone(digits, settings, m)
    assert packed == unpacked and len(packed) == 2 * -(-len(digits.y_train) // 64)
