"""Per-epoch checkpoints: a fit stopped after any epoch and continued from its checkpoint ends exactly as
the unbroken fit, for every optimizer; checkpoints are written whole; a run killed mid-training continues
in the same run, logging each epoch once, those it had not written yet when it died included."""

import dataclasses

import numpy as np
import pytest

from src.experiment import checkpoints, epochs, runner
from src.experiment.checkpoints import Checkpoint
from src.experiment.runner import run_config
from src.nn.mlp import init_params
from src.nn.optim import build_optimizer
from src.nn.train import EPOCH_METRICS, Callbacks, History, Progress, TrainingData, TrainSettings, fit
from src.outcomes import Outcome
from src.tracking import names

from ..helpers import read_store

OPTIMIZERS = [("sgd", {}), ("momentum", {"momentum": 0.9, "nesterov": True}), ("adam", {})]


class Stop(Exception):
    pass


def _fit(X, y, name, knobs, epochs, saved=None, stop_after=None, dtype=np.float64):
    """A small fit; `stop_after`: raise once the checkpoint of that epoch is taken (as a kill would)."""
    rng = np.random.default_rng(7)
    params = init_params(X.shape[1], 16, 3, rng, dtype=dtype)
    optimizer = build_optimizer(name, params, lr=0.05, decay=1e-3, **knobs)
    progress = Progress.start(rng) if saved is None else checkpoints.restore(saved, params, optimizer)
    taken = []

    def on_progress(state):
        taken.append(checkpoints.snapshot(params, optimizer, state, "config"))
        if state.epochs_done == stop_after:
            raise Stop

    data = TrainingData(X[:150], y[:150], X[150:], y[150:])
    try:
        result = fit(
            params,
            data,
            optimizer=optimizer,
            settings=TrainSettings(batch_size=16, epochs=epochs, patience=4),
            progress=progress,
            callbacks=Callbacks(on_progress=on_progress),
        )
    except Stop:
        return None, taken
    return result, taken


@pytest.fixture
def blobs(rng):
    centers = rng.normal(scale=2, size=(3, 8))
    y = rng.integers(0, 3, size=200)
    X = centers[y] + rng.normal(size=(200, 8))
    return (X - X.min()) / (X.max() - X.min()), y


@dataclasses.dataclass
class _DyingSaver(checkpoints.Saver):
    """A run's Saver whose run stops (Ctrl-C or SIGTERM) right after the state of epoch `epoch` was taken."""

    epoch: int = 0
    run_id: str = ""
    killed_at: list = dataclasses.field(default_factory=list)

    def __call__(self, progress):
        super().__call__(progress)
        if progress.epochs_done == self.epoch:
            self.killed_at.append(self.run_id)
            raise KeyboardInterrupt


def _dying_after_epoch(epoch, killed_at):
    """A stand-in for runner._saving whose runs stop right after epoch `epoch` (`_DyingSaver`); the runs it
    stops are appended to `killed_at`."""
    saving = runner._saving

    def replaced(ctx, training):
        saver = saving(ctx, training)
        return _DyingSaver(saver.path, saver.params, saver.optimizer, saver.identity, epoch=epoch,
                           run_id=ctx.run.run_id, killed_at=killed_at)  # fmt: skip

    return replaced


@pytest.mark.parametrize(("name", "knobs"), OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_fit_continued_from_any_epoch_ends_exactly_as_the_unbroken_fit(blobs, tmp_path, name, knobs, dtype):
    X, y = blobs
    whole, _ = _fit(X, y, name, knobs, epochs=8, dtype=dtype)
    for stop_after in (1, 4, 7):
        _, taken = _fit(X, y, name, knobs, epochs=8, stop_after=stop_after, dtype=dtype)
        path = tmp_path / f"{name}-{stop_after}.ckpt.npz"
        checkpoints.save(path, taken[-1])  # through the file, as a later process reads it
        saved = checkpoints.load(path, "config")
        assert saved is not None and saved.meta["epochs_done"] == stop_after
        continued, _ = _fit(X, y, name, knobs, epochs=8, saved=saved, dtype=dtype)
        assert continued.best_epoch == whole.best_epoch and continued.stopped == whole.stopped
        for metric in EPOCH_METRICS[:-1]:  # epoch_time_s is wall time
            assert continued.history.metrics[metric] == whole.history.metrics[metric]
        for key, value in whole.params.items():
            assert np.array_equal(continued.params[key], value) and continued.params[key].dtype == dtype


def test_checkpoints_are_written_whole_and_read_only_for_their_config(tmp_path):
    path = tmp_path / "deep" / "run.ckpt.npz"
    checkpoints.save(path, Checkpoint({"a": np.arange(3.0)}, {"config_hash": "c", "rng": {"state": 2**100}}))
    first = checkpoints.load(path, "c")
    assert first is not None and first.meta["rng"]["state"] == 2**100 and list(first.arrays["a"]) == [0, 1, 2]
    assert checkpoints.load(path, "another config") is None
    with pytest.raises(ValueError, match="reserved"):  # a failed write leaves the last checkpoint as it was
        checkpoints.save(path, Checkpoint({checkpoints.META: np.zeros(1)}, {}))
    assert checkpoints.load(path, "c") is not None
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging file left behind
    path.write_bytes(b"not an npz")  # damaged (a machine lost mid-write): the run starts over
    assert checkpoints.load(path, "c") is None
    checkpoints.remove(path)
    assert checkpoints.load(path, "c") is None


def test_what_a_writer_killed_mid_write_left_is_deleted_by_the_next_save_or_removal(tmp_path):
    path = tmp_path / "run.ckpt.npz"
    killed = tmp_path / f".{path.name}.x1y2.tmp"  # what kill -9 during np.savez leaves
    other_run = tmp_path / ".other.ckpt.npz.abcd.tmp"
    killed.write_bytes(b"half"), other_run.write_bytes(b"half")
    assert checkpoints.leftovers(path) == [killed]
    checkpoints.save(path, Checkpoint({"a": np.zeros(1)}, {"config_hash": "c"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other_run.name])
    killed.write_bytes(b"half")
    checkpoints.remove(path)
    assert [p.name for p in tmp_path.iterdir()] == [other_run.name]  # another run's writer is not ours to judge


def test_a_runs_state_is_written_at_most_once_a_second_and_the_held_one_when_it_is_interrupted(tmp_path):
    """Short epochs: the state of every epoch is taken, but written only once SAVE_EVERY_S have passed since
    the last write; the state held meanwhile is a copy (training goes on in place), and `flush` writes it."""
    now = [0.0]
    path = tmp_path / "run.ckpt.npz"
    params = init_params(8, 16, 3, np.random.default_rng(0))
    optimizer = build_optimizer("adam", params, lr=0.01, decay=0.0)
    saver = checkpoints.Saver(path, params, optimizer, "config", clock=lambda: now[0])
    progress = Progress.start(np.random.default_rng(1))
    written = []
    for epoch, clock in enumerate([0.3, 0.6, 1.2, 1.5, 1.9, 2.4], start=1):
        now[0] = clock
        progress.history.append({name: float(epoch) for name in EPOCH_METRICS})
        params["W1"] += 1.0  # training goes on in place after the state was taken
        saver(progress)
        saved = checkpoints.load(path, "config")
        written.append(saved.meta["epochs_done"] if saved else None)
    assert written == [None, None, 3, 3, 3, 6]  # at 1.2 s and 2.4 s
    now[0] = 2.5
    progress.history.append({name: 7.0 for name in EPOCH_METRICS})
    saver(progress)  # epoch 7's state, held: 0.1 s after the last write
    params["W1"] += 1.0
    assert checkpoints.load(path, "config").meta["epochs_done"] == 7 - 1
    saver.flush()  # interrupted
    saved = checkpoints.load(path, "config")
    assert saved.meta["epochs_done"] == 7 and np.array_equal(saved.arrays["param.W1"], params["W1"] - 1.0)
    saver.flush()  # nothing held: nothing written
    assert checkpoints.load(path, "config").meta["epochs_done"] == 7


def test_the_checkpoint_folder_is_configured_or_beside_a_sqlite_store(tmp_path, monkeypatch):
    assert checkpoints.folder_for(str(tmp_path / "c"), "http://host:5000") == tmp_path / "c"
    assert checkpoints.folder_for(None, f"sqlite:///{tmp_path}/mlflow.db") == tmp_path / checkpoints.FOLDER
    monkeypatch.setenv("NETSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    assert checkpoints.folder_for(None, "http://host:5000") == tmp_path / "cache" / "checkpoints"


def test_a_run_killed_mid_training_continues_in_the_same_run_and_ends_as_an_unbroken_one(
    compose_cfg, store_uri, tmp_path, monkeypatch
):
    def cfg():
        return compose_cfg(f"tracking.uri={store_uri}", "epochs=6", "threads=1", "optimizer=adam")

    whole = run_config(cfg())
    killed_at: list[str] = []
    saving = runner._saving
    monkeypatch.setattr(runner, "_saving", _dying_after_epoch(3, killed_at))
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg())
    monkeypatch.setattr(runner, "_saving", saving)
    folder = checkpoints.folder_for(None, store_uri)
    assert [p.name for p in folder.iterdir()] == [f"{killed_at[0]}{checkpoints.SUFFIX}"]
    view = read_store(store_uri)
    assert view.client.get_run(killed_at[0]).data.tags[names.OUTCOME] == Outcome.KILLED.value

    continued = run_config(cfg())
    assert continued.run_id == killed_at[0]  # the same MLflow run
    view = read_store(store_uri)
    run = view.client.get_run(continued.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[names.OUTCOME] == Outcome.FINISHED.value
    assert names.FAILURE_REASON not in run.data.tags  # the killed attempt's reason went with it
    assert view.steps(run, "val_loss") == [1, 2, 3, 4, 5, 6]  # each epoch logged once
    first = view.client.get_run(whole.run_id)
    assert view.history(run, "val_loss") == view.history(first, "val_loss")
    for metric in ("test_acc", "test_loss", "insample_acc", "best_val_ce", "best_epoch", "epochs_trained"):
        assert continued.metrics.get(metric, run.data.metrics[metric]) == whole.metrics.get(
            metric, first.data.metrics[metric]
        )
    assert list(folder.iterdir()) == []  # the run ended: its checkpoint is gone
    assert len(view.runs) == 2


def test_epochs_waiting_to_be_written_when_a_run_dies_are_written_by_the_attempt_that_continues_it(
    compose_cfg, store_uri, monkeypatch
):
    """A SIGKILL leaves no time to write the epochs that wait (src/experiment/epochs.py): the checkpoint holds
    them, and the next attempt writes them before it trains on, so the run still has every epoch once."""

    def cfg():
        return compose_cfg(f"tracking.uri={store_uri}", "epochs=6", "threads=1")

    whole = run_config(cfg())
    monkeypatch.setattr(epochs, "LOG_EVERY_S", 1e9)  # nothing is written before the fit ends
    monkeypatch.setattr(runner, "_write_pending_epochs", lambda epoch_end, outcome: outcome)  # nor then: killed
    monkeypatch.setattr(runner, "_saving", _dying_after_epoch(3, []))
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg())
    view = read_store(store_uri)
    (killed,) = [run for run in view.runs if run.info.run_id != whole.run_id]
    assert view.steps(killed, "val_loss") == []  # its three epochs were never written
    monkeypatch.undo()

    continued = run_config(cfg())
    assert continued.run_id == killed.info.run_id
    view = read_store(store_uri)
    run = view.client.get_run(continued.run_id)
    for name in EPOCH_METRICS:
        assert view.steps(run, name) == [1, 2, 3, 4, 5, 6], name
    assert view.history(run, "val_loss") == view.history(view.client.get_run(whole.run_id), "val_loss")


class Writes:
    """A RunLog that keeps its writes of epochs: the steps of each, and its tags."""

    run_id = "run"

    def __init__(self):
        self.writes: list[list[int]] = []
        self.tags: list[dict] = []

    def log_steps(self, steps, tags=None):
        self.writes.append([at.step for at in steps])
        self.tags.append(dict(tags or {}))


def _row(epoch):
    return {name: 1.0 / epoch for name in EPOCH_METRICS}


def _ended(end, history, epochs):
    for epoch in range(1, epochs + 1):
        history.append(_row(epoch))
        end(epoch, _row(epoch))


def test_short_epochs_are_written_together_and_the_last_one_at_once():
    history, log = History(), Writes()
    _ended(epochs.EpochEnd(log, 30, history), history, 30)
    assert sum(log.writes, []) == list(range(1, 31))  # every epoch once, in order
    assert len(log.writes) < 5  # 30 epochs of a few microseconds: not a write each

    clock = iter(range(100, 1000, 2))  # created at 100, then every epoch ends 2 s after the one before it
    history, log = History(), Writes()
    _ended(epochs.EpochEnd(log, 3, history, clock=lambda: next(clock)), history, 3)
    assert log.writes == [[1], [2], [3]]  # long epochs: each written as it ends


class Judge:
    """A sweep's pruner that compares curves after the epochs `at` (none: sha, which the sweep decides)."""

    def __init__(self, at):
        self.at = at

    def compares_at(self, epoch):
        return epoch in self.at

    def __call__(self, epoch, curve):
        return None

    class job:  # noqa: N801 - stands in for the SweepJob the pruner reads its rule from
        class prune:  # noqa: N801
            metric = "val_ce"


def test_a_pruned_sweep_writes_its_curve_at_once_where_its_peers_compare_it():
    history, log = History(), Writes()
    still = lambda: 0.0  # noqa: E731 - no time passes: only rungs and the end write
    _ended(epochs.EpochEnd(log, 12, history, pruner=Judge({3, 9}), publish_curve=True, clock=still), history, 12)
    assert log.writes == [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11, 12]]
    curves = [epochs.decode_curve(tags[names.CURVE]) for tags in log.tags]
    assert [len(curve) for curve in curves] == [3, 9, 12]  # each write carries the curve up to its last epoch

    history, log = History(), Writes()  # sha: the sweep reads the curves once every config paused at the rung
    _ended(epochs.EpochEnd(log, 12, history, pruner=Judge(set()), publish_curve=True, clock=still), history, 12)
    assert log.writes == [list(range(1, 13))]


def test_a_run_whose_last_epochs_cannot_be_written_ends_as_an_error_with_its_history(
    compose_cfg, store_uri, monkeypatch
):
    """The fit ended well (stopped early by its patience, so its last epoch did not write at once), but its
    waiting epochs could not be written: the run fails as any error does (a traceback, history.csv and
    Figure 1 of every epoch), and leaves no checkpoint to continue from."""
    from src.tracking.mlflow_store import MlflowRunLog

    def full_disk(self, steps, tags=None):
        raise OSError("the disk is full")

    monkeypatch.setattr(epochs, "LOG_EVERY_S", 1e9)
    monkeypatch.setattr(MlflowRunLog, "log_steps", full_disk)
    with pytest.raises(OSError, match="disk is full"):
        run_config(compose_cfg(f"tracking.uri={store_uri}", "epochs=300", "patience=2", "threads=1"))  # stops early
    view = read_store(store_uri)
    (run,) = view.runs
    assert run.info.status == "FAILED" and run.data.tags[names.OUTCOME] == Outcome.ERROR.value
    artifacts = {a.path for a in view.client.list_artifacts(run.info.run_id)}
    assert {names.HISTORY, names.TRACEBACK} <= artifacts
    folder = checkpoints.folder_for(None, store_uri)
    assert not folder.exists() or list(folder.iterdir()) == []  # none was left (or, its epochs short, written)
