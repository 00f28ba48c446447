"""The sweep logic in process, with an in-memory store and an inline pool: plan, resume, dispatch, failure
handling, reconciliation, batches and progress."""

import math
import shutil
import signal
import subprocess

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from src import interrupts
from src.config.identity import flatten, to_plain
from src.errors import ConfigError, RunDiverged, SweepBusy, SweepIncomplete, SweepInterrupted, WorkerLost
from src.experiment import checkpoints
from src.experiment.job import current_sweep_job
from src.experiment.runner import run_config
from src.outcomes import Outcome
from src.pruning import Peer, PruneRule, Rule
from src.sweep import winner as winner_module
from src.sweep.apps import HydraApp, NetsweepApp
from src.sweep.halving import Halving
from src.sweep.jobs import classify, failure
from src.sweep.packing import packs
from src.sweep.plan import Composer, Ending, Job
from src.sweep.record import process_started
from src.sweep.runner import SweepRunner
from src.sweep.settings import Backend, LauncherSettings, PruneBy, Resume
from src.sweep.slots import WorkerDied
from src.tracking import names
from src.tracking.opening import open_store

from ..fakes import FakeStore, InlinePool, WorkerVanished
from ..helpers import read_store

STORES: dict = {}  # uri -> FakeStore, for the fake task
GRID = [[f"optimizer.lr={lr}", f"model.decay={decay}", "epochs=2"] for lr in (0.05, 0.1, 1e4) for decay in (0, 1e-4)]


def fake_task(cfg):
    """What run_config does to a sweep's child run, without training: attach, log epochs, close."""
    job = current_sweep_job()
    run = STORES[job.tracking_uri].attach_run(job.run_id, {names.OVERRIDES: " ".join(HydraConfig.get().overrides.task)})
    run.log_params(flatten(to_plain(cfg)))
    if cfg.tracking.run_name == "vanish":
        raise WorkerVanished()
    if cfg.tracking.run_name == "interrupt":
        run.close(Outcome.KILLED, "interrupted")
        raise KeyboardInterrupt
    if cfg.data.name == "npz":
        run.close(Outcome.ERROR, "ValueError: bad data")
        raise ValueError("bad data")
    accs = [
        min(0.99, 0.5 + cfg.optimizer.lr * epoch + cfg.seed / 100 - cfg.model.decay * 100)
        for epoch in range(1, cfg.epochs + 1)
    ]
    for epoch, acc in enumerate(accs, start=1):
        loss = 1 - acc
        run.log_metrics({"val_acc": acc, "val_loss": loss, "val_ce": loss, "train_acc": acc, "train_loss": loss}, epoch)
    if cfg.optimizer.lr > 100:
        run.close(Outcome.DIVERGED, "diverged at epoch 1")
        raise RunDiverged("diverged at epoch 1")
    run.log_metrics(
        {
            "best_val_acc": max(accs),
            "best_val_loss": 1 - max(accs),
            "best_val_ce": 1 - max(accs),
            "test_acc": max(accs),
        },
        cfg.epochs,
    )
    run.close(Outcome.FINISHED)
    return 1 - max(accs)


class NoCallbacks:
    def on_job_start(self, **kwargs):
        pass

    def on_job_end(self, **kwargs):
        pass


@pytest.fixture
def make(loader, tmp_path):
    """make(store=..., pool=..., **settings) -> (runner, store, pool)."""

    def build(store=None, pool=None, hydra_overrides=(), task=fake_task, **settings):
        store = store or FakeStore(f"fake://{tmp_path}")
        STORES[store.uri] = store
        master = loader.load_configuration(
            "config", [f"hydra.sweep.dir={tmp_path}/multirun", *hydra_overrides], RunMode.MULTIRUN
        )
        master.tracking.uri = store.uri
        settings = LauncherSettings(progress_interval_s=0, **settings)
        pool = pool or InlinePool()
        app = NetsweepApp(master, settings, store_opener=lambda uri: store)
        runner = SweepRunner(HydraContext(loader, NoCallbacks()), task, master, settings, app=app, pool_factory=pool)
        return runner, store, pool

    return build


def _children(store, runner):
    return store.children_of(runner.app.record.parent_run_id)


def test_a_grid_is_grouped_trained_reconciled_and_reported(make, capsys):
    runner, store, pool = make()
    returns = runner.launch(GRID, 0)
    parent = store.run(runner.app.record.parent_run_id)
    children = _children(store, runner)
    assert len(children) == 6 and {c.tags[names.SWEEP_ID] for c in children} == {parent.tags[names.SWEEP_ID]}
    assert sorted(c.outcome.value for c in children) == ["diverged"] * 2 + ["finished"] * 4
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 6
    assert [math.isinf(r.return_value) for r in returns] == [False] * 4 + [True] * 2
    assert parent.outcome == Outcome.FINISHED and parent.name.endswith(f"(sweep {parent.tags[names.SWEEP_ID]})")
    manifest = store.read_json(parent.run_id, names.MANIFEST)
    assert len(manifest["configs"]) == 6 and manifest["defaults"]["optimizer.lr"] == "0.1"
    assert {"report/curves.png", "report/heatmap.png", "report/leaderboard.md"} <= set(store.artifacts(parent.run_id))
    assert parent.tags["winner.config"] == "lr=0.1 decay=0"
    printed = capsys.readouterr().out
    assert "training 6 configs\n" in printed and "[6/6 configs done]" in printed
    assert printed.count("best config: lr=0.1 decay=0") == 1 and "reproduce it: python -m src.run" in printed
    assert pool.closed == 1


def test_a_rerun_resumes_everything_without_training_anything(make, capsys):
    first, store, _ = make()
    first.launch(GRID, 0)
    capsys.readouterr()
    again, _, pool = make(store=store)
    returns = again.launch(GRID, 0)
    assert pool.ran == [] and pool.closed == pool.opened  # workers were warming up: stopped unused
    assert again.app.record.parent_run_id == first.app.record.parent_run_id
    assert len(store.records) == 7  # no new run
    printed = capsys.readouterr().out
    assert "skip " not in printed and "nothing to train: all 6 configs already have a result" in printed
    assert f"nothing new to train: sweep {again.app.record.sweep_id} already ran to its end" in printed
    assert f"its report: {first.app.report_dir.resolve()} and report/ on the parent run" in printed
    assert sorted(r.return_value for r in returns)[:4] == sorted(r.return_value for r in returns if r.return_value < 1)
    forced, _, pool = make(store=store, resume=False)
    forced.launch(GRID, 0)
    assert len(pool.ran) == 6 and len(store.records) == 13


def test_a_grown_grid_shows_reused_configs_under_its_own_parent(make):
    first, store, _ = make()
    first.launch(GRID[:2], 0)
    bigger, _, pool = make(store=store)
    bigger.launch(GRID, 0)
    children = _children(store, bigger)
    reused = [c for c in children if names.REUSED_FROM in c.tags]
    assert len(children) == 6 and len(reused) == 2 and len(pool.ran) == 4
    assert all(c.name.endswith("(reused)") and c.metrics["best_val_acc"] > 0 for c in reused)
    results = store.results_by_config(bigger.app.record.experiment_id)
    assert len(results) == 6 and not {r.run_id for r in results.values()} & {c.run_id for c in reused}  # links never
    # stand in for a result: the runs that trained the configs do


def test_a_bad_value_stops_the_sweep_before_any_run(make):
    runner, store, pool = make()
    with pytest.raises(ConfigError, match=r"sweep job #1 \(optimizer.lr=-1\): optimizer.lr=-1 is invalid"):
        runner.launch([["optimizer.lr=0.1"], ["optimizer.lr=-1"]], 0)
    assert store.records == {} and pool.opened == 0


def test_a_dead_worker_costs_only_its_config(make):
    runner, store, pool = make(pool=InlinePool(die={2}))
    returns = runner.launch(GRID[:4], 0)
    by_index = {c.tags[names.OVERRIDES]: c for c in _children(store, runner)}
    killed = by_index[" ".join(GRID[2])]
    assert killed.outcome == Outcome.KILLED and "worker process died" in killed.tags[names.FAILURE_REASON]
    assert sorted(c.outcome.value for c in by_index.values()) == ["finished"] * 3 + ["killed"]
    assert returns[2].status == JobStatus.FAILED
    assert isinstance(failure(returns[2]), SweepIncomplete)
    assert "1 of 4 configs did not finish" in str(failure(returns[2]))
    assert store.run(runner.app.record.parent_run_id).outcome == Outcome.ERROR
    assert not checkpoints.leftovers(checkpoints.path_for(runner.app.checkpoints, killed.run_id))  # its half-
    # written checkpoint is gone once the sweep knows its worker died


def test_when_the_pool_breaks_the_started_config_ends_killed_and_the_rest_go_again(make):
    runner, store, pool = make()
    jobs = [list(GRID[0]), [*GRID[1], "tracking.run_name=vanish"], list(GRID[2]), list(GRID[3])]
    runner.launch(jobs, 0)
    outcomes = {c.tags[names.OVERRIDES]: c.outcome for c in _children(store, runner)}
    assert outcomes[" ".join(jobs[1])] == Outcome.KILLED
    assert sorted(o.value for o in outcomes.values()) == ["finished"] * 3 + ["killed"]
    assert pool.restarts == 1 and pool.ran.count(2) == 1  # the untouched config ran once, on the new pool


def test_an_error_is_recorded_and_the_others_finish(make, tmp_path):
    runner, store, _ = make()
    returns = runner.launch([GRID[0], ["data=npz", f"data.path={tmp_path}/x.npz"]], 0)
    assert [r.status for r in returns] == [JobStatus.COMPLETED, JobStatus.FAILED]
    assert "ValueError: bad data" in str(failure(returns[1]))


def test_batches_are_one_sweep_with_one_report_and_a_running_count(make, capsys):
    runner, store, pool = make()
    runner.expect(6)
    for start in (0, 2, 4):
        runner.launch(GRID[start : start + 2], start)
    printed = capsys.readouterr().out
    assert len([r for r in store.records.values() if r.tags.get(names.ROLE) == names.ROLE_SWEEP]) == 1
    assert len(_children(store, runner)) == 6 and pool.opened == 1 and pool.closed == 1
    assert [f"[{k}/6 configs done]" in printed for k in range(1, 7)] == [True] * 6
    assert printed.count("best config:") == 1 and printed.count("done: ") == 1


def test_an_unannounced_number_of_batches_ends_at_finish(make, capsys):
    runner, store, pool = make(hydra_overrides=["hydra.sweeper.max_batch_size=2"])
    runner.launch(GRID[:2], 0)
    runner.launch(GRID[2:4], 2)
    assert pool.closed == 0 and "[3 configs done]" in capsys.readouterr().out
    runner.finish()
    runner.finish()  # once only
    assert pool.closed == 1 and capsys.readouterr().out.count("best config:") == 1


def test_an_interrupt_kills_what_runs_keeps_what_finished_and_closes_the_parent(make):
    runner, store, pool = make()
    with pytest.raises(KeyboardInterrupt):
        runner.launch([GRID[0], [*GRID[1], "tracking.run_name=interrupt"], GRID[2]], 0)
    outcomes = sorted(c.outcome.value for c in _children(store, runner))
    assert outcomes == ["finished", "killed", "killed"]  # the third never started: closed by the parent
    assert store.run(runner.app.record.parent_run_id).outcome == Outcome.KILLED
    assert pool.aborted


def test_ctrl_c_while_the_report_is_drawn_closes_the_parent_says_so_and_a_rerun_draws_it(make, monkeypatch, capsys):
    runner, store, _ = make()
    monkeypatch.setattr("src.sweep.apps.build_report", lambda *args, **kwargs: signal.raise_signal(signal.SIGINT))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()  # the user's Ctrl-C arrives through netsweep's handler, as in `python -m src.run`
    try:
        with pytest.raises(SweepInterrupted, match=r"^interrupted after every config had ended \(2 configs, none"):
            runner.launch(GRID[:2], 0)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert store.run(runner.app.record.parent_run_id).outcome == Outcome.KILLED  # closed, never left RUNNING
    assert [c.outcome for c in _children(store, runner)] == [Outcome.FINISHED] * 2
    printed = capsys.readouterr().out
    assert "interrupted before the report was complete: rerun the same command to draw it" in printed
    assert "done: 2 finished" in printed
    monkeypatch.undo()
    again, _, pool = make(store=store)
    again.launch(GRID[:2], 0)
    parent = store.run(again.app.record.parent_run_id)
    assert (
        pool.ran == [] and parent.outcome == Outcome.FINISHED and "report/curves.png" in store.artifacts(parent.run_id)
    )


def test_progress_ranks_by_the_mean_over_seeds(make, capsys):
    runner, _, _ = make()
    runner.launch([[f"optimizer.lr={lr}", f"seed={seed}", "epochs=1"] for lr in (0.1, 0.2) for seed in (0, 1)], 0)
    lines = [line for line in capsys.readouterr().out.splitlines() if "configs done]" in line]
    assert lines[0].endswith("best_val_ce 0.41, best_val_acc 0.59, the best so far (1 of 2 seeds done)")
    assert lines[1].endswith("the best so far (mean 0.405)")
    assert lines[2].endswith("best_val_ce 0.31, best_val_acc 0.69, the best so far (1 of 2 seeds done)")
    assert lines[-1].endswith("best_val_ce 0.3, best_val_acc 0.7, the best so far (mean 0.305)")


def test_a_config_asked_for_twice_in_a_batch_is_trained_once(make, capsys):
    runner, store, pool = make()
    returns = runner.launch([GRID[0], GRID[2], list(GRID[0])], 0)
    assert pool.ran == [0, 1] and len(_children(store, runner)) == 2
    assert returns[2].status == JobStatus.COMPLETED and returns[2].return_value == returns[0].return_value
    assert "job #2 is the same config as job #0: trained once" in capsys.readouterr().out


def test_pruned_configs_are_results_that_resume_keeps_unless_asked(make):
    first, store, _ = make()
    first.launch(GRID[:2], 0)
    pruned = _children(store, first)[0]
    store.run_log(pruned.run_id).close(Outcome.PRUNED, "asha rung at epoch 1")
    kept, _, pool = make(store=store)
    kept.launch(GRID[:2], 0)
    assert pool.ran == []
    retrained, _, pool = make(store=store, resume="except_pruned")
    retrained.launch(GRID[:2], 0)
    assert pool.ran == [0] and store.run(pruned.run_id).outcome == Outcome.PRUNED  # the old run stays as it was


def test_pruning_settings_are_checked_before_anything_runs(make):
    with pytest.raises(ConfigError, match="hydra.launcher.prune=hyperband is invalid: use one of none, median, asha"):
        make(prune="hyperband")
    with pytest.raises(ConfigError, match="hydra.launcher.resume=sometimes is invalid: use one of true, false, except"):
        make(resume="sometimes")
    with pytest.raises(ConfigError, match="prune_factor=1 is invalid: use 2 or more"):
        make(prune="asha", prune_factor=1)
    with pytest.raises(ConfigError, match="prune_min_epochs=0 is invalid"):
        make(prune="asha", prune_min_epochs=0)
    with pytest.raises(ConfigError, match="register_best='bad name/' is not a usable model name"):
        make(register_best="bad name/")


def test_the_winner_is_evaluated_once_and_registered_when_asked(make, capsys, monkeypatch):
    evaluating = []
    monkeypatch.setattr(winner_module, "evaluate_in_background", lambda uri, run_id, *rest: evaluating.append(run_id))
    runner, store, _ = make(register_best="digits-net")
    runner.launch(GRID[:4], 0)
    winner = store.run(store.registry["digits-net"][0])
    assert winner.params["optimizer.lr"] == "0.1" and evaluating == [winner.run_id]  # started once, in its process
    assert "registered: models:/digits-net@best is version 1" in capsys.readouterr().out
    store.run_log(winner.run_id).set_tags({"netsweep.evaluated": "yes"})
    again, _, _ = make(store=store, register_best="digits-net")
    again.launch(GRID[:4], 0)
    assert evaluating == [winner.run_id] and store.registry["digits-net"] == [winner.run_id]
    assert "already registered: models:/digits-net@best is version 1" in capsys.readouterr().out


def test_a_winner_that_cannot_be_evaluated_or_registered_says_why_and_the_sweep_still_closes(make, capsys, monkeypatch):
    runner, store, _ = make(register_best="digits-net", hydra_overrides=["tracking.log_model=false"])
    runner.launch(GRID[:2], 0)
    assert "winner not registered as digits-net: tracking.log_model=false" in capsys.readouterr().out
    assert store.registry == {}

    def broken(*args):
        raise RuntimeError("evaluator unavailable")

    monkeypatch.setattr(winner_module, "evaluate_in_background", broken)  # it could not even be started
    again, _, _ = make(store=store, register_best="digits-net", resume=False)
    again.launch(GRID[:2], 0)
    printed = capsys.readouterr().out
    assert "could not evaluate or register the winner: RuntimeError: evaluator unavailable" in printed
    assert "could not build the report" not in printed and "best config: decay=0" in printed
    assert store.run(again.app.record.parent_run_id).outcome == Outcome.FINISHED


def test_a_sweep_running_in_another_live_process_is_not_resumed_under_it(make):
    first, store, _ = make()
    first.launch(GRID[:2], 0)
    parent = store.run_log(first.app.record.parent_run_id)
    other = subprocess.Popen(["sleep", "60"])
    try:
        parent.reopen()  # as if `other` were running the sweep now
        parent.set_tags({names.SWEEP_PID: str(other.pid), names.SWEEP_PROCESS_STARTED: process_started(other.pid)})
        with pytest.raises(SweepBusy, match=rf"sweep \w+ is already running in process {other.pid} on "):
            make(store=store)[0].launch(GRID[:2], 0)
        parent.set_tags({names.SWEEP_PROCESS_STARTED: "1"})  # the pid was reused by another process
        reused_pid, _, _ = make(store=store)
        reused_pid.launch(GRID[:2], 0)  # resumed: not refused
        assert store.run(parent.run_id).outcome == Outcome.FINISHED
        parent.reopen()
        parent.set_tags({names.SWEEP_PID: str(other.pid), names.SWEEP_PROCESS_STARTED: process_started(other.pid)})
    finally:
        other.kill()
        other.wait()
    again, _, pool = make(store=store)  # its process died: the sweep is resumed
    again.launch(GRID[:2], 0)
    assert pool.ran == [] and store.run(parent.run_id).outcome == Outcome.FINISHED


def test_mlflow_grouping_is_refused_for_another_hydra_apps_config(loader):
    other_app = OmegaConf.create({"lr": 0.1})
    with pytest.raises(ConfigError, match="hydra.launcher.mlflow=true needs netsweep's own app"):
        SweepRunner(HydraContext(loader, NoCallbacks()), fake_task, other_app, LauncherSettings(mlflow=True))
    assert isinstance(
        SweepRunner(HydraContext(loader, NoCallbacks()), fake_task, other_app, LauncherSettings()).app, HydraApp
    )


def _returned(task, *args):
    """A JobReturn as a worker sends it back after running `task(*args)`."""
    from hydra.core.utils import JobReturn

    ret = JobReturn(status=JobStatus.COMPLETED)
    try:
        ret.return_value = task(*args)
    except Exception as exc:
        ret.status, ret.return_value = JobStatus.FAILED, exc
    return ret


def test_one_function_says_how_a_job_ended_from_what_came_back():
    def diverge():
        raise RunDiverged("diverged at epoch 3")

    def fail():
        raise ValueError("bad data\nmore detail")

    def lose():
        raise WorkerLost("its run was already started")

    assert classify(WorkerDied((None,), "SIGKILL")) == Ending(Outcome.KILLED, "its worker process died (SIGKILL)")
    assert classify(_returned(lambda: 0.25)) == Ending(Outcome.FINISHED, value=0.25)
    assert classify(_returned(diverge)) == Ending(Outcome.DIVERGED, "diverged at epoch 3")
    assert classify(_returned(fail)) == Ending(Outcome.ERROR, "ValueError: bad data")  # one line
    assert classify(_returned(lose)).outcome == Outcome.KILLED


def test_any_hydra_apps_dead_worker_comes_back_to_hydra_as_a_failure(loader):
    master = OmegaConf.create({"lr": 0.1, "hydra": {"job": {"num": 0}}})
    app = HydraApp(master, LauncherSettings())
    job = Job(0, ["lr=0.1"], master)
    app.plan([job])
    app.prepare([job])
    app.read_result(job, WorkerDied((master,), "SIGKILL"))
    ret = app.job_return(job)
    assert job.outcome == Outcome.KILLED and ret.status == JobStatus.FAILED
    assert isinstance(failure(ret), WorkerLost) and "job 0 (lr=0.1): its worker process died (SIGKILL)" in str(
        failure(ret)
    )
    assert app.tracking_uri is None and app.finish(False) == ["done: 1 killed"]


def test_launcher_settings_are_declared_choices_checked_as_they_are_made():
    settings = LauncherSettings(backend="dask", resume=False, prune="asha", prune_by="seed")
    assert (settings.backend, settings.resume_mode, settings.prune, settings.prune_by) == (
        Backend.dask,
        Resume.false,
        Rule.asha,
        PruneBy.seed,
    )
    assert LauncherSettings(resume="except_pruned").resume_mode is Resume.except_pruned
    assert LauncherSettings().resume_mode is Resume.true  # Hydra's YAML true
    assert not settings.prune_rule.by_config and settings.prune_rule.rule is Rule.asha
    assert settings.tags()["launcher.backend"] == "dask" and settings.tags()["launcher.resume"] == "false"
    with pytest.raises(ConfigError, match="hydra.launcher.backend=ray is invalid: use one of loky, dask"):
        LauncherSettings(backend="ray")
    with pytest.raises(ConfigError, match="address=tcp://h:1 is only used with hydra.launcher.backend=dask"):
        LauncherSettings(address="tcp://h:1")


def real_task(cfg):
    """What `python -m src.run -m` runs for each job: the config trained for real, into its sweep's run."""
    return run_config(cfg, list(HydraConfig.get().overrides.task), None, current_sweep_job()).objective(cfg.objective)


SHA_GRID = [
    [f"optimizer.lr={lr}", f"model.decay={decay}", "epochs=9", "threads=1", "tracking.log_model=false"]
    for lr in (0.03, 0.1, 0.3)
    for decay in (0, 1e-4)
]


@pytest.mark.slow
def test_synchronous_halving_pauses_every_config_at_each_rung_and_an_interrupted_sweep_continues_exactly(
    make, store_uri, compose_cfg, capsys, tmp_path
):
    """prune=sha: the 6 configs pause at epoch 1, the best 2 go on to epoch 3, the best of them to the end.
    Interrupted while two configs wait at epoch 3, the rerun continues them from their checkpoints in their
    runs, and the winner ends bit-identical to the same config trained alone (threads=1)."""
    sha = dict(task=real_task, prune=Rule.sha, prune_min_epochs=1, prune_factor=3)
    store = open_store(store_uri)
    first, _, _ = make(store=store, **sha)
    decisions = first.app.continuing
    rounds = []

    def interrupted_at_the_second_rung(jobs):
        rounds.append(sorted(j.outcome.value for j in jobs))
        if len(rounds) == 2:
            raise KeyboardInterrupt
        return decisions(jobs)

    first.app.continuing = interrupted_at_the_second_rung
    with pytest.raises(KeyboardInterrupt):
        first.launch(SHA_GRID, 0)
    assert rounds == [["paused"] * 6, ["paused"] * 2 + ["pruned"] * 4]
    assert "rung at epoch 1 decided: 2 of 6 configs go on, 4 pruned" in capsys.readouterr().out
    waiting = [j for j in first.app.jobs if j.outcome == Outcome.KILLED]
    assert len(waiting) == 2 and all(store.epochs_logged(j.run_id) == 3 for j in waiting)

    again, _, _ = make(store=store, **sha)
    again.launch(SHA_GRID, 0)
    out = capsys.readouterr().out
    assert "rung at epoch 3 decided: 1 of 2 configs go on, 1 pruned" in out
    runs = {j.run_id: store.run(j.run_id) for j in again.app.jobs}
    trained = sorted((store.epochs_logged(run_id), run.outcome.value) for run_id, run in runs.items())
    assert trained == [(1, "pruned")] * 4 + [(3, "pruned"), (9, "finished")]
    assert {j.run_id for j in waiting} <= set(runs)  # continued in their own runs
    view = read_store(store_uri)
    for run_id in runs:  # each epoch logged once, across the attempts
        steps = [m.step for m in view.client.get_metric_history(run_id, "val_acc")]
        assert sorted(steps) == list(range(1, 1 + store.epochs_logged(run_id)))
    assert all("sha rung at epoch" in run.tags[names.PRUNED] for run in runs.values() if run.outcome == Outcome.PRUNED)
    assert list((tmp_path / checkpoints.FOLDER).iterdir()) == []

    (winner,) = [run for run in runs.values() if run.outcome == Outcome.FINISHED]
    overrides = winner.tags[names.OVERRIDES].split()
    alone = run_config(compose_cfg(*overrides, f"tracking.uri={store_uri.replace('mlflow.db', 'alone.db')}"))
    assert {k: winner.metrics[k] for k in alone.metrics} == alone.metrics


def test_halving_rounds_send_the_best_on_rung_by_rung_and_the_rest_to_be_closed():
    """The parent's side of prune=sha on plain jobs: where each job pauses, and what each decision sends out."""
    curves = {}
    halving = Halving(PruneRule("sha", 1, 3), lambda: curves)
    jobs = [Job(i, [], OmegaConf.create({"epochs": 9})) for i in range(4)]
    for job in jobs:
        job.identify(f"c{job.index}", f"k{job.index}", f"k{job.index}", f"c{job.index}")
        job.schedule(f"run{job.index}")
    assert [halving.pause_at(j) for j in jobs] == [1] * 4
    for job in jobs[:3]:  # job 3 diverged before the rung: it takes no part
        job.end(Ending(Outcome.PAUSED), None)
        curves[job.run_id] = Peer(job.key, job.group, [0.1 * (job.index + 1)])
    jobs[3].end(Ending(Outcome.DIVERGED, "diverged"), None)
    again, lines = halving.decide(jobs)
    assert again == jobs[:3] and all(j.outcome == Outcome.SCHEDULED for j in again)
    assert lines == [
        "rung at epoch 1 decided: 1 of 3 configs go on, 2 pruned (the last one standing trains to its end)"
    ]
    assert halving.pause_at(jobs[0]) is None and halving.prune_now(jobs[0]) is None  # on to its last epoch
    assert [halving.pause_at(j) for j in jobs[1:3]] == [None, None]
    assert all("sha rung at epoch 1" in halving.prune_now(j) for j in jobs[1:3])
    assert halving.decide(jobs) == ([], [])  # nothing paused: nothing to decide


def test_without_sha_no_job_ever_pauses():
    job = Job(0, [], OmegaConf.create({"epochs": 9}))
    assert Halving(PruneRule("asha", 1, 3), dict).pause_at(job) is None


FINAL = ("test_acc", "test_loss", "insample_acc", "insample_loss", "best_epoch", "best_val_loss", "best_val_ce")
PACK_GRID = [
    [f"optimizer.lr={lr}", f"model.decay={decay}", "epochs=9", "threads=1", "tracking.log_model=false"]
    for lr in (0.03, 0.1, 0.3, 1e4)
    for decay in (0, 1e-4)
]


@pytest.mark.slow
def test_packs_halve_synchronously_and_every_child_gets_what_it_gets_trained_alone(make, tmp_path, _store_template):
    """pack=auto on 2 workers: 2 packs of 4 configs; 2 configs diverge in their packs, 5 are pruned at the
    rungs while the others train on; each child run ends exactly as with pack=1 (NumPy: the same bits)."""
    children = {}
    for pack in ("auto", "1"):
        path = tmp_path / f"pack-{pack}.db"
        shutil.copy(_store_template, path)
        store = open_store(f"sqlite:///{path}")
        runner, _, _ = make(store=store, task=real_task, prune=Rule.sha, n_jobs=2, pack=pack)
        runner.launch(PACK_GRID, 0)
        children[pack] = {
            j.key: (store.run(j.run_id).outcome.value, store.epochs_logged(j.run_id), store.run(j.run_id).metrics)
            for j in runner.app.jobs
        }
    assert sorted(o for o, _, _ in children["auto"].values()) == ["diverged"] * 2 + ["finished"] + ["pruned"] * 5
    for key, (outcome, epochs, metrics) in children["1"].items():
        packed = children["auto"][key]
        assert (packed[0], packed[1]) == (outcome, epochs), key
        assert {k: packed[2].get(k) for k in FINAL} == {k: metrics.get(k) for k in FINAL}, key


def test_a_pruned_sweep_of_a_grid_is_its_own_sweep_and_trains_rather_than_reuse_the_full_ones(make):
    full, store, _ = make()
    full.launch(GRID, 0)
    pruned, _, pool = make(store=store, prune=Rule.asha)
    pruned.launch(GRID, 0)
    assert pruned.app.record.sweep_id != full.app.record.sweep_id  # its own parent and report
    assert not any(job.reused for job in pruned.app.jobs) and len(pool.ran) == len(GRID)
    again, _, pool = make(store=store)  # the full grid again: its results are reused, the pruned ones are not its
    again.launch(GRID, 0)
    assert again.app.record.sweep_id == full.app.record.sweep_id and all(job.reused for job in again.app.jobs)


def test_packs_group_what_can_share_a_computation_spread_over_the_workers(loader):
    composer = Composer(loader, loader.load_configuration("config", [], RunMode.MULTIRUN))
    grid = [[f"optimizer.lr={lr}", f"seed={seed}"] for seed in (0, 1) for lr in (0.01, 0.1, 0.3)]
    jobs = [Job(i, o, composer.compose(o, i)) for i, o in enumerate(grid)]
    assert [[j.index for j in p] for p in packs(jobs, 1, 2)] == [[i] for i in range(6)]
    assert [[j.index for j in p] for p in packs(jobs, None, 2)] == [[0, 1], [2], [3, 4], [5]]  # a seed per pack
    assert [[j.index for j in p] for p in packs(jobs, 2, 8)] == [[0, 1], [2], [3, 4], [5]]
    adam = Job(6, ["optimizer=adam"], composer.compose(["optimizer=adam"], 6))
    assert [len(p) for p in packs([*jobs[:3], adam], None, 1)] == [3, 1]  # another optimizer: another pack
    cosine = Job(7, ["optimizer.schedule=cosine"], composer.compose(["optimizer.schedule=cosine"], 7))
    assert [len(p) for p in packs([*jobs[:3], cosine], None, 1)] == [3, 1]  # another schedule: another pack
