"""Configs trained as one pack are recorded each in its own run, with what each gives alone."""

import pytest

from src.errors import ConfigError, RunDiverged
from src.experiment import checkpoints
from src.experiment.packs import PackEntry, run_pack
from src.experiment.runner import run_config
from src.outcomes import Outcome
from src.tracking.opening import open_store

from ..helpers import read_store

FINAL = ("test_acc", "test_loss", "insample_acc", "insample_loss", "best_epoch", "best_val_loss", "best_val_acc")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_pack_records_each_config_as_its_own_run_with_the_metrics_it_gives_alone(compose_cfg, store_uri, optimizer):
    lrs = {"sgd": (0.05, 0.3, 1e4), "momentum": (0.02, 0.1, 1e4), "adam": (0.001, 0.01, 1e3)}[optimizer]
    common = [
        f"optimizer={optimizer}",
        "epochs=4",
        "threads=1",
        "tracking.log_model=false",
        f"tracking.uri={store_uri}",
    ]
    decays = (0, 1e-4, 0)
    configs = [[*common, f"optimizer.lr={lr}", f"model.decay={d}"] for lr, d in zip(lrs, decays, strict=True)]
    packed = run_pack([PackEntry(compose_cfg(*c), c, None, None) for c in configs])
    assert isinstance(packed[2], RunDiverged)  # the huge learning rate diverges, alone in its slice
    alone_uri = store_uri.replace("mlflow.db", "alone.db")
    for overrides, summary in zip(configs[:2], packed[:2], strict=True):
        alone = run_config(compose_cfg(*overrides, f"tracking.uri={alone_uri}"))
        assert summary.outcome == Outcome.FINISHED
        assert {k: summary.metrics[k] for k in FINAL} == {k: alone.metrics[k] for k in FINAL}  # NumPy: same bits
    view = read_store(store_uri)
    runs = view.runs
    assert sorted(r.data.tags["outcome"] for r in runs) == ["diverged", "finished", "finished"]
    for run in runs:  # each run holds its own epochs, once each
        steps = sorted(m.step for m in view.client.get_metric_history(run.info.run_id, "val_acc"))
        assert steps == ([] if run.data.tags["outcome"] == "diverged" else [1, 2, 3, 4])
    assert open_store(store_uri).epochs_logged(packed[0].run_id) == 4


def test_a_run_on_another_array_library_is_a_pack_of_one_with_the_same_metrics(compose_cfg, store_uri):
    common = ["epochs=3", "threads=1", "tracking.log_model=false", f"tracking.uri={store_uri}"]
    on_numpy = run_config(compose_cfg(*common))
    on_strict = run_config(compose_cfg(*common, "arrays=array_api_strict"))  # the array API standard only
    assert {k: on_strict.metrics[k] for k in FINAL} == {k: on_numpy.metrics[k] for k in FINAL}
    with pytest.raises(ConfigError, match="arrays=jax device=None: unknown array backend 'jax'"):
        run_config(compose_cfg(*common, "arrays=jax"))
    with pytest.raises(ConfigError, match="runs on the CPU only"):
        run_config(compose_cfg(*common, "device=cuda"))
    assert len(read_store(store_uri).runs) == 2  # refused before any run existed


def test_what_one_member_raises_ends_that_member_only(compose_cfg, store_uri, monkeypatch):
    common = ["epochs=3", "threads=1", "tracking.log_model=false", f"tracking.uri={store_uri}"]
    configs = [[*common, f"optimizer.lr={lr}"] for lr in (0.05, 0.1, 0.3)]
    save, calls = checkpoints.save, []

    def full_disk_for_the_second(path, checkpoint):
        calls.append(path)
        if len(calls) == 2:  # the second member's first checkpoint
            raise OSError(28, "No space left on device")
        save(path, checkpoint)

    monkeypatch.setattr(checkpoints, "save", full_disk_for_the_second)
    monkeypatch.setattr(checkpoints, "SAVE_EVERY_S", 0.0)  # every epoch's state written, not held
    packed = run_pack([PackEntry(compose_cfg(*c), c, None, None) for c in configs])
    assert isinstance(packed[1], OSError)
    assert [p.outcome for p in (packed[0], packed[2])] == [Outcome.FINISHED] * 2  # the others train on
    outcomes = sorted(r.data.tags["outcome"] for r in read_store(store_uri).runs)
    assert outcomes == ["error", "finished", "finished"]
