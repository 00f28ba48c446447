"""The command line in process: one line and the right exit code for every kind of error, and a whole
single run and sweep through `src.run.main` (the subprocess tests in tests/e2e prove the wiring)."""

import pickle
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, ValidationError

from src import run
from src.cli.help import help_text
from src.cli.messages import exit_code_and_message
from src.config.override_errors import BadOverride, KeyAlreadySet, OverrideError, UnknownKey
from src.config.schema import Config, register_configs
from src.errors import (
    ConfigError,
    DataError,
    RunDiverged,
    SweepIncomplete,
    SweepInterrupted,
)
from src.outcomes import Outcome
from src.sweep.plan import Job, apply_override
from src.sweep.progress import Progress, interrupted_text

from ..helpers import REPO, read_store


@pytest.mark.parametrize(
    "exc,code,needle",
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (SweepInterrupted("interrupted after every config had ended (2 configs, none killed)"), 130, "none killed"),
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


@pytest.fixture
def compose_cfg():
    """Hydra composing conf/ for one test (as the conftest's, but released at its end: main_in initialises
    Hydra again)."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides))


def _raised(call):
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


OVERRIDE_MESSAGES = {
    "optimizer.l=0.1": "unknown config key 'optimizer.l' (did you mean optimizer.lr?): check its spelling "
    "(python -m src.run --cfg job lists every key)",
    "model.hidden_size=abc": "model.hidden_size=abc is invalid: Value 'abc' of type 'str' could not be converted "
    "to Integer",
    "model.init=bad": "model.init=bad is invalid: use one of assignment, he, glorot",
    "objective=foo": "objective=foo is invalid: use one of test_acc, test_loss, insample_acc, insample_loss, "
    "best_epoch, best_val_loss, best_val_acc, best_val_ce",
    "optimizer.name=rmsprop": "optimizer.name=rmsprop is invalid: use one of sgd, momentum, adam",
    "+epochs=3": "epochs is already in the config: set it with epochs=3 (a leading + adds a key it lacks)",
    "optimizer.momentum=0.5": "optimizer.momentum is not a key of the optimizer you chose: it belongs to "
    "optimizer=momentum; choose one, e.g. optimizer=momentum optimizer.momentum=...",
}


@pytest.mark.parametrize("override", list(OVERRIDE_MESSAGES))
def test_hydras_composition_errors_become_one_line_naming_key_value_and_what_to_use(compose_cfg, override):
    exc = _raised(lambda: compose_cfg(override))
    assert isinstance(exc, ConfigCompositionException)
    assert exit_code_and_message(exc) == (2, OVERRIDE_MESSAGES[override])


@pytest.mark.parametrize("override", list(OVERRIDE_MESSAGES))
def test_a_sweeps_own_override_errors_are_typed_and_read_as_hydras(compose_cfg, override):
    """netsweep applies a sweep job's values itself: the same mistake gets Hydra's type and text, and the
    one-line message is made from the error's fields."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    exc = _raised(lambda: apply_override(compose_cfg(), parsed))
    assert isinstance(exc, OverrideError) and isinstance(exc, ConfigCompositionException)
    assert exc.key == parsed.key_or_group and exc.line == override
    assert str(exc).splitlines()[0] == str(_raised(lambda: compose_cfg(override))).splitlines()[0]
    assert exit_code_and_message(exc) == (2, OVERRIDE_MESSAGES[override])


def test_hydras_own_settings_get_a_did_you_mean(compose_cfg):
    for typo, meant in [
        ("hydra.launcher.resum=false", "hydra.launcher.resume"),
        ("hydra.job.chdri=true", "hydra.job.chdir"),
    ]:
        code, message = exit_code_and_message(_raised(lambda typo=typo: compose_cfg(typo)))
        assert code == 2 and f"(did you mean {meant}?)" in message and "--cfg hydra" in message


def test_override_errors_carry_their_fields():
    assert isinstance(_raised(lambda: apply_override(OmegaConf.create({"a": 1}), _parse("+a=2"))), KeyAlreadySet)
    bad = _raised(lambda: apply_override(OmegaConf.structured(Config), _parse("epochs=many")))
    assert isinstance(bad, BadOverride) and (bad.key, bad.value) == ("epochs", "many")
    assert isinstance(bad.reason, ValidationError) and bad.__cause__ is bad.reason
    assert exit_code_and_message(bad)[1].startswith("epochs=many is invalid: Value 'many' of type 'str'")
    unknown = UnknownKey("optimizer.l", "optimizer.l=0.1")
    assert pickle.loads(pickle.dumps(unknown)).key == "optimizer.l"  # errors travel back from workers whole


def _parse(override):
    return OverridesParser.create().parse_overrides([override])[0]


def test_help_lists_groups_defaults_and_the_commented_top_level_keys():
    text = help_text(REPO / "conf")
    assert "  optimizer  adam, momentum, sgd (default)" in text
    assert "  data       digits (default), fashion_mnist, mnist, npz" in text
    assert "  divergence_factor=100.0    a run diverges when its cost exceeds" in text  # the value as written
    assert "  patience=null              stop after this many epochs" in text
    assert "defaults=" not in text and "hydra=" not in text
    assert "  decay_lr   The assignment's question" in text


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


def test_rejected_commands_leave_no_folder_behind(main_in, store_uri, capsys, tmp_path):
    for args, message in [
        (["seed=-1"], "netsweep: seed=-1 is invalid: use a seed >= 0"),
        (["-m", "optimizer.lr=0.1,-1"], "netsweep: sweep job #1 (optimizer.lr=-1): optimizer.lr=-1 is invalid"),
        (["-m", "hydra.launcher.resum=false"], "netsweep: unknown Hydra setting 'hydra.launcher.resum' (did you"),
    ]:
        assert main_in(*args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), (args, err)
    assert read_store(store_uri).runs == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []  # no outputs/, no multirun/


def test_a_named_sweep_without_multirun_is_refused_rather_than_run_once(main_in, store_uri, capsys, tmp_path):
    assert main_in("+sweep=decay_lr", "epochs=1") == 2
    assert capsys.readouterr().err.strip() == (
        "netsweep: +sweep=decay_lr defines a sweep over optimizer.lr, model.decay: run it with -m, "
        "e.g. python -m src.run -m +sweep=decay_lr epochs=1"
    )
    assert read_store(store_uri).runs == [] and not (tmp_path / "outputs").exists()


def test_a_sweep_in_process(main_in, store_uri, capsys, tmp_path):
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
    assert "configs done] lr=0.05: finished, best_val_ce " in out  # named by the swept key alone
    assert "epochs=1" not in "".join(line for line in out.splitlines() if "configs done]" in line)
    assert main_in("-m", "optimizer.lr=0.05,0.1", "epochs=1", "hydra.launcher.n_jobs=1") == 0  # all done: resumed
    out = capsys.readouterr().out
    assert "nothing to train: all 2 configs already have a result" in out and "configs done]" not in out
    assert len(list(tmp_path.glob("multirun/*/*"))) == 1  # the resumed sweep leaves no folder of its own


def test_asha_prunes_losing_configs_and_their_seeds_together(main_in, store_uri, capsys):
    assert (
        main_in(
            "-m",
            "optimizer.lr=0.3,0.01",
            "seed=0,1",
            "epochs=4",
            "hydra.launcher.n_jobs=1",
            "hydra.launcher.prune=asha",
            "hydra.launcher.prune_min_epochs=1",
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
    assert out.count(": pruned, best_val_ce ") == 2 and "best config: lr=0.3" in out


def _job(index, overrides, outcome=Outcome.FINISHED, ce=0.5, acc=0.9, reused=False):
    """A sweep job as the progress lines see it: named in full (as its run is), ended with these metrics."""
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
    job = Job(index, list(overrides), OmegaConf.create({"objective": "best_val_ce", "seed": seed}))
    unseeded = " ".join(o for o in overrides if not o.startswith("seed="))
    job.identify(" ".join(overrides) + " h=256 epochs=3", key=str(index), group=unseeded, group_name=unseeded)
    if reused:
        job.reuse(f"run{index}", outcome, {"best_val_ce": ce, "best_val_acc": acc})
    else:
        job.recorded(outcome, "", {"best_val_ce": ce, "best_val_acc": acc})
    return job


def _progress(total, swept=("optimizer.lr", "model.decay")):
    progress = Progress("sweep abc", 0, lambda: [])
    progress.total, progress.swept = total, list(swept)
    return progress


def test_progress_lines_name_configs_by_their_swept_values_and_never_repeat_them(capsys):
    progress = _progress(3)
    jobs = [_job(0, ["optimizer.lr=0.1", "model.decay=0"], ce=0.4), _job(1, ["optimizer.lr=0.3", "model.decay=0"])]
    jobs.append(_job(2, ["optimizer.lr=0.3", "model.decay=1e-4"], ce=0.3))
    progress.batch(jobs)
    for job in jobs:
        progress.job_done(job)
    assert capsys.readouterr().out.splitlines() == [
        "[sweep abc] training 3 configs",
        "[1/3 configs done] lr=0.1 decay=0: finished, best_val_ce 0.4, best_val_acc 0.9, the best so far",
        "[2/3 configs done] lr=0.3 decay=0: finished, best_val_ce 0.5, best_val_acc 0.9 "
        "| best so far: lr=0.1 decay=0 (0.4)",
        "[3/3 configs done] lr=0.3 decay=1e-4: finished, best_val_ce 0.3, best_val_acc 0.9, the best so far",
    ]


def test_progress_with_seeds_gives_the_mean_of_the_seeds_done(capsys):
    progress = _progress(4, swept=("optimizer.lr", "seed"))
    jobs = [
        _job(i, [f"optimizer.lr={lr}", f"seed={seed}"], ce=ce)
        for i, (lr, seed, ce) in enumerate([(0.1, 0, 0.4), (0.1, 1, 0.6), (0.3, 0, 0.45), (0.3, 1, 0.47)])
    ]
    progress.batch(jobs)
    for job in jobs:
        progress.job_done(job)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith(
        "lr=0.1 seed=0: finished, best_val_ce 0.4, best_val_acc 0.9, the best so far (1 of 2 seeds done)"
    )
    assert lines[2].endswith("the best so far (mean 0.5)")
    assert lines[3].endswith(
        "lr=0.3 seed=0: finished, best_val_ce 0.45, best_val_acc 0.9, the best so far (1 of 2 seeds done)"
    )
    assert lines[4].endswith("lr=0.3 seed=1: finished, best_val_ce 0.47, best_val_acc 0.9, the best so far (mean 0.46)")


def test_a_sweep_in_batches_says_what_it_trains_once_and_a_resumed_one_that_nothing_is_left(capsys):
    progress = _progress(6)
    for start in range(0, 6, 2):
        progress.batch([_job(i, [f"optimizer.lr={i}"]) for i in range(start, start + 2)])
    assert capsys.readouterr().out.splitlines() == [
        "[sweep abc] training 6 configs, 2 at a time as the sweeper asks for them"
    ]
    resumed = _progress(2)
    resumed.batch([_job(i, [f"optimizer.lr={i}"], reused=True) for i in range(2)])
    assert capsys.readouterr().out == "[sweep abc] nothing to train: all 2 configs already have a result\n"
    partly = _progress(3)
    partly.batch([_job(0, ["optimizer.lr=1"], reused=True), _job(1, ["optimizer.lr=2"]), _job(2, ["optimizer.lr=3"])])
    assert capsys.readouterr().out == "[sweep abc] training 2 configs (1 already done, skipped)\n"


def test_the_running_line_is_printed_only_when_it_says_something_new(capsys):
    running = [("optimizer.lr=0.1 model.decay=0 h=256 epochs=3", "epoch 2")]
    progress = Progress("sweep abc", 0, lambda: running)
    progress.total, progress.swept = 2, ["optimizer.lr"]
    progress.batch([_job(0, ["optimizer.lr=0.1", "model.decay=0"]), _job(1, ["optimizer.lr=0.3", "model.decay=0"])])
    capsys.readouterr()
    said = progress.beat(progress.beat())
    running[0] = (running[0][0], "epoch 3")
    progress.beat(said)
    assert capsys.readouterr().out.splitlines() == [
        "[0/2 configs done] running: lr=0.1 (epoch 2)",
        "[0/2 configs done] running: lr=0.1 (epoch 3)",
    ]


def test_an_interrupted_sweep_says_what_the_interrupt_left():
    ended = [_job(0, ["optimizer.lr=0.1"]), _job(1, ["optimizer.lr=0.3"], reused=True)]
    assert interrupted_text(ended) == "interrupted after every config had ended (2 configs, none killed)"
    killed = [*ended, _job(2, ["optimizer.lr=1"], outcome=Outcome.KILLED)]
    assert interrupted_text(killed).startswith("interrupted; 1 config in progress or waiting recorded as KILLED: rerun")
