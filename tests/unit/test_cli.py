"""The command line in process: one line and the right exit code for every kind of error, and a whole
single run and sweep through `src.run.main` (the subprocess tests in tests/e2e prove the wiring)."""

import sys

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, MissingMandatoryValue, ValidationError

from src import run
from src.cli.messages import exit_code_and_message
from src.errors import ConfigError, DataError, RunDiverged, SweepIncomplete

from ..helpers import read_store


def _composition_error(message, cause):
    try:
        raise ConfigCompositionException(message) from cause
    except ConfigCompositionException as exc:
        return exc


@pytest.mark.parametrize(
    "exc,code,needle",
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (RunDiverged("run x diverged at epoch 1"), 3, "diverged at epoch 1"),
        (ConfigError("optimizer.lr=-1 is invalid"), 2, "optimizer.lr=-1"),
        (DataError("x.npz: no such file"), 2, "x.npz"),
        (SweepIncomplete("1 of 2 configs did not finish"), 1, "1 of 2"),
        (MemoryError("boom"), 1, "MemoryError: boom"),
    ],
)
def test_each_kind_of_failure_has_its_exit_code_and_one_line(exc, code, needle):
    got_code, message = exit_code_and_message(exc)
    assert got_code == code and needle in message and "\n" not in message


def test_a_typo_is_named_with_a_suggestion_and_no_plus_advice():
    exc = _composition_error(
        "Could not override 'optimizer.l'.\nTo append to your config use +optimizer.l=0.1",
        ConfigAttributeError("Key 'l' not in 'SgdConfig'"),
    )
    code, message = exit_code_and_message(exc)
    assert code == 2 and "'optimizer.l'" in message and "did you mean optimizer.lr?" in message
    assert "+" not in message and "SgdConfig" not in message


def test_a_wrong_type_names_the_key_and_value():
    exc = _composition_error(
        "Error merging override model.hidden_size=abc",
        ValidationError("Value 'abc' of type 'str' could not be converted to Integer"),
    )
    code, message = exit_code_and_message(exc)
    assert code == 2 and message.startswith("model.hidden_size=abc is invalid: Value 'abc'")


def test_missing_values_and_options_are_explained():
    missing = MissingMandatoryValue("Missing mandatory value: data.path")
    missing.full_key = "data.path"
    assert exit_code_and_message(missing) == (
        2,
        "data.path is required: set it on the command line, e.g. data.path=...",
    )
    options = MissingConfigException(
        "In 'config': Could not find 'optimizer/rmsprop'",
        missing_cfg_file="optimizer/rmsprop",
        options=["sgd", "adam", "momentum"],
    )
    code, message = exit_code_and_message(options)
    assert code == 2 and "optimizer/rmsprop" in message and message.endswith("available options: adam, momentum, sgd")


@pytest.fixture
def main_in(tmp_path, monkeypatch, store_uri):
    """src.run.main() with these arguments, in this test's folder and store; returns its exit code."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["src.run", *args])
        try:
            run.main()
        except SystemExit as exit_:
            return exit_.code
        finally:
            GlobalHydra.instance().clear()
        return 0

    return call


def test_a_single_run_in_process(main_in, store_uri, capsys):
    assert main_in("epochs=1") == 0
    (record,) = read_store(store_uri).runs
    assert record.data.tags["outcome"] == "finished"
    assert f"mlflow ui --backend-store-uri {store_uri}" in capsys.readouterr().out


def test_a_bad_override_exits_2_with_one_line_and_leaves_nothing(main_in, store_uri, capsys, tmp_path):
    assert main_in("optimizer.lr=-1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("netsweep: optimizer.lr=-1 is invalid")
    assert read_store(store_uri).runs == []
    assert not (tmp_path / "outputs").exists()  # no empty output folder left behind


def test_a_named_sweep_without_multirun_is_refused_rather_than_run_once(main_in, store_uri, capsys, tmp_path):
    assert main_in("+sweep=decay_lr", "epochs=1") == 2
    assert capsys.readouterr().err.strip() == (
        "netsweep: +sweep=decay_lr defines a sweep over optimizer.lr, model.decay: run it with -m, "
        "e.g. python -m src.run -m +sweep=decay_lr epochs=1"
    )
    assert read_store(store_uri).runs == [] and not (tmp_path / "outputs").exists()


def test_a_sweep_in_process(main_in, store_uri, capsys):
    assert (
        main_in(
            "-m", "optimizer.lr=0.05,0.1", "epochs=1", "hydra.launcher.n_jobs=1", "hydra.launcher.progress_interval_s=0"
        )
        == 0
    )
    view = read_store(store_uri)
    assert len(view.parents) == 1 and len(view.children) == 2
    out = capsys.readouterr().out
    assert "[2/2 configs done]" in out and "best config: lr=" in out


def test_asha_prunes_losing_configs_and_their_seeds_together(main_in, store_uri, capsys):
    assert (
        main_in(
            "-m",
            "optimizer.lr=0.3,0.01",
            "seed=0,1",
            "epochs=4",
            "hydra.launcher.n_jobs=1",
            "hydra.launcher.prune=asha",
            "hydra.launcher.progress_interval_s=0",
        )
        == 0
    )
    view = read_store(store_uri)
    by_lr = {}
    for child in view.children:
        by_lr.setdefault(child.data.params["optimizer.lr"], []).append(child)
    assert [r.data.tags["outcome"] for r in by_lr["0.3"]] == ["finished", "finished"]
    slow = sorted(by_lr["0.01"], key=lambda r: r.data.params["seed"])
    assert [(r.info.status, r.data.tags["outcome"]) for r in slow] == [("FINISHED", "pruned")] * 2
    assert "asha rung at epoch 1" in slow[0].data.tags["netsweep.pruned"]
    assert slow[1].data.tags["netsweep.pruned"].startswith("pruned with its config")  # judged with seed 0
    assert [len(view.history(r, "val_loss")) for r in slow] == [1, 1]
    assert {"figure1.png", "weights.npz", "history.csv"} <= set(view.artifacts(slow[0]))
    out = capsys.readouterr().out
    assert out.count(": pruned, best val_acc") == 2 and "best config: lr=0.3" in out
