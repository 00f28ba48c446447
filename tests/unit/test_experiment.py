"""One config -> one tracked run, in process: every way a run can end, and a sweep's job attaching to the
run its parent created."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from src.config.schema import OPTIMIZER_SCHEMAS, SCHEMAS, Config, DType, Init, ModelConfig
from src.data.shared import DataShare
from src.errors import ConfigError, RunDiverged, WorkerLost
from src.experiment import runner
from src.experiment.job import SweepJob, current_sweep_job
from src.experiment.runner import run_config
from src.nn.optim import OPTIMIZERS, knobs
from src.outcomes import Outcome
from src.tracking import names
from src.tracking.opening import open_store

from ..helpers import REPO, read_store


@pytest.fixture
def cfg_for(compose_cfg, store_uri):
    return lambda *overrides: compose_cfg(f"tracking.uri={store_uri}", "epochs=2", *overrides)


def test_a_finished_run_is_recorded_whole_and_reproducibly(cfg_for, store_uri, tmp_path):
    summary = run_config(cfg_for(), ["epochs=2"], output_dir=tmp_path)
    again = run_config(cfg_for(), ["epochs=2"])
    view = read_store(store_uri)
    first, second = view.runs
    assert first.info.run_id == summary.run_id and first.info.status == "FINISHED"
    assert first.info.run_name == "lr=0.1 decay=1e-4 h=256 epochs=2"
    assert first.data.tags["outcome"] == "finished" and first.data.tags["overrides"] == "epochs=2"
    for tag in ("config_hash", "group_hash", "data_fingerprint", "blas_threads", "worker_pid"):
        assert first.data.tags[tag]
    assert first.data.params["optimizer.lr"] == "0.1" and first.data.params["data.name"] == "digits"
    assert view.steps(first, "val_loss") == [1, 2]
    assert view.history(first, "val_loss") == view.history(second, "val_loss")
    assert {"test_acc", "best_val_loss", "best_val_acc", "best_epoch", "peak_rss_mb"} <= set(first.data.metrics)
    assert summary.test_acc == first.data.metrics["test_acc"] and summary.metrics == again.metrics
    assert set(view.client.get_run(first.info.run_id).data.metrics) >= {"train_loss", "val_ce", "epoch_time_s"}
    assert "epoch" not in first.data.metrics  # the step is the epoch; no metric repeats it
    assert {"config.yaml", "figure1.png", "weights.npz", "history.csv"} <= set(view.artifacts(first))
    assert summary.figure_path == tmp_path / "figure1.png" and summary.figure_path.read_bytes()[:4] == b"\x89PNG"
    assert again.figure_path is None


def test_a_bad_value_fails_before_any_run_exists(cfg_for, store_uri):
    with pytest.raises(ConfigError, match="optimizer.batch_size"):
        run_config(cfg_for("optimizer.batch_size=100000"))
    with pytest.raises(ConfigError, match="optimizer.lr"):
        run_config(cfg_for("optimizer.lr=-1"))
    assert read_store(store_uri).runs == []


def test_divergence_closes_the_run_failed_with_its_curves(cfg_for, store_uri):
    with pytest.raises(RunDiverged, match="diverged at epoch 1"):
        run_config(cfg_for("optimizer.lr=1e4"))
    view = read_store(store_uri)
    (run,) = view.runs
    assert (run.info.status, run.data.tags["outcome"]) == ("FAILED", "diverged")
    assert "epoch 1, step" in run.data.tags["failure_reason"]
    assert {"figure1.png", "history.csv"} <= set(view.artifacts(run))


def test_an_error_in_training_closes_the_run_with_its_traceback(cfg_for, store_uri, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("out of memory in the test")

    monkeypatch.setattr(runner, "fit", broken)
    with pytest.raises(MemoryError):
        run_config(cfg_for())
    view = read_store(store_uri)
    (run,) = view.runs
    assert (run.info.status, run.data.tags["outcome"]) == ("FAILED", "error")
    assert "out of memory in the test" in run.data.tags["failure_reason"]
    assert "traceback.txt" in view.artifacts(run)


def test_an_interrupt_closes_the_run_killed(cfg_for, store_uri, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg_for())
    (run,) = read_store(store_uri).runs
    assert (run.info.status, run.data.tags["outcome"]) == ("KILLED", "killed")


def _scheduled_run(store_uri):
    store = open_store(store_uri)
    return store, store.create_run(store.experiment_id("netsweep"), "scheduled", {}, scheduled=True).run_id


def test_a_sweep_job_trains_into_the_run_its_parent_created(cfg_for, store_uri, tmp_path):
    store, run_id = _scheduled_run(store_uri)
    job = SweepJob(run_id, store_uri, DataShare(str(tmp_path / "share")))
    runner.publish_data(cfg_for().data, job.data_share)  # as the sweep's parent does
    with job:
        assert current_sweep_job() is job
        summary = run_config(cfg_for(), ["epochs=2"], sweep_job=current_sweep_job())
    assert current_sweep_job() is None
    assert summary.run_id == run_id and store.run(run_id).outcome == Outcome.FINISHED
    assert len(read_store(store_uri).runs) == 1


def test_a_retried_job_ends_its_lost_attempt_killed(cfg_for, store_uri):
    store, run_id = _scheduled_run(store_uri)
    store.attach_run(run_id, {})  # a first attempt started, then its worker was lost
    with pytest.raises(WorkerLost):
        run_config(cfg_for(), sweep_job=SweepJob(run_id, store_uri))
    assert store.run(run_id).outcome == Outcome.KILLED
    with pytest.raises(WorkerLost):  # and a third attempt leaves it as it is
        run_config(cfg_for(), sweep_job=SweepJob(run_id, store_uri))
    assert store.run(run_id).outcome == Outcome.KILLED


def test_a_sweep_job_whose_data_fails_closes_its_scheduled_run(cfg_for, store_uri, tmp_path):
    store, run_id = _scheduled_run(store_uri)
    np.savez(
        tmp_path / "bad.npz",
        X_train=np.zeros((20, 2)),
        y_train=np.arange(20) % 2,
        X_test=np.zeros((1, 2)),
        y_test=np.array([5]),
    )
    with pytest.raises(Exception, match="labels"):
        run_config(cfg_for("data=npz", f"data.path={tmp_path / 'bad.npz'}"), sweep_job=SweepJob(run_id, store_uri))
    record = store.run(run_id)
    assert record.outcome == Outcome.ERROR and "labels" in record.tags[names.FAILURE_REASON]


def test_patience_stops_a_run_early_and_it_ends_finished(cfg_for, store_uri):
    summary = run_config(cfg_for("epochs=300", "patience=3", "optimizer.lr=0.3"))
    view = read_store(store_uri)
    (run,) = view.runs
    trained = int(run.data.metrics["epochs_trained"])
    assert summary.outcome == Outcome.FINISHED and run.data.tags["outcome"] == "finished"
    assert 3 < trained < 300 and run.data.tags["stopped_early"].startswith("no lower validation loss for 3 epochs")
    assert len(view.history(run, "val_loss")) == trained
    assert trained - run.data.metrics["best_epoch"] == 3
    assert names.CURVE not in run.data.tags  # only a sweep's runs publish their curve


def test_an_interrupted_run_keeps_the_epochs_it_trained(cfg_for, store_uri, monkeypatch, tmp_path):
    real_fit = runner.fit

    def interrupted_at_epoch_2(*args, callbacks, **kwargs):
        def end(epoch, row):
            callbacks.on_epoch_end(epoch, row)
            if epoch == 2:
                raise KeyboardInterrupt

        return real_fit(*args, callbacks=dataclasses.replace(callbacks, on_epoch_end=end), **kwargs)

    monkeypatch.setattr(runner, "fit", interrupted_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg_for("epochs=5"), output_dir=tmp_path)
    view = read_store(store_uri)
    (run,) = view.runs
    assert run.data.tags["outcome"] == "killed" and view.steps(run, "val_loss") == [1, 2]
    assert {"history.csv", "figure1.png"} <= set(view.artifacts(run)) and (tmp_path / "figure1.png").is_file()


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize(
    "data,schema", [("digits", "digits"), ("mnist", "idx"), ("fashion_mnist", "idx"), ("npz", "npz")]
)
def test_a_composed_config_becomes_the_schemas_dataclasses_once(compose_cfg, data, schema, optimizer):
    extra = ["data.path=x.npz"] if data == "npz" else []
    cfg = compose_cfg(f"data={data}", f"optimizer={optimizer}", "optimizer.lr=0.25", *extra)
    settings = runner.settings_of(cfg)
    assert type(settings) is Config and type(settings.model) is ModelConfig
    assert type(settings.data) is SCHEMAS[f"data/{schema}"]
    assert type(settings.optimizer) is OPTIMIZER_SCHEMAS[optimizer]
    assert isinstance(settings.model.dtype, DType) and isinstance(settings.model.init, Init)
    assert settings.data.val_fraction == cfg.data.val_fraction and settings.seed == cfg.seed
    params = {"W1": np.zeros((2, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 2)), "b2": np.zeros(2)}
    built = runner.optimizer_for(settings, params)
    assert type(built) is OPTIMIZERS[optimizer]
    assert (built.lr, built.decay) == (0.25, cfg.model.decay)  # the optimizer owns the model's decay
    own = {knob: vars(built)[knob] for knob in knobs(optimizer)}
    assert own == {knob: cfg.optimizer[knob] for knob in knobs(optimizer)}


def test_the_optimizers_knobs_reach_it(compose_cfg):
    cfg = compose_cfg("optimizer=momentum", "optimizer.momentum=0.5", "optimizer.nesterov=true")
    built = runner.optimizer_for(runner.settings_of(cfg), {"W1": np.zeros((1, 1))})
    assert (built.momentum, built.nesterov) == (0.5, True)


def test_a_runs_peak_memory_is_its_own_not_that_of_the_process_that_started_it():
    """getrusage's ru_maxrss keeps the starting process's memory across exec (Linux): a run started from a
    process holding 400 MB would have logged peak_rss_mb >= 400."""
    held = np.ones(50_000_000)  # 400 MB in this process while it starts the child
    child = subprocess.run(
        [sys.executable, "-c", "from src.experiment.recording import peak_rss_mb; print(peak_rss_mb())"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert 10 < float(child.stdout) < held.nbytes / 2**20 / 2
