"""The report without a store: swept keys, grouping over seeds, the one ranking (ties included), the
leaderboard, the figures; then built from a real store and from the CLI. (The objective and honest ranks:
test_report_ranks.py; the views, the page and the MLflow UI's view: test_report_views.py.)"""

import json
import math

import numpy as np
import pytest

from src.outcomes import Outcome
from src.report import figures, leaderboard, views
from src.report.__main__ import main as report_main
from src.report.build import build_report, summary, winner_tags
from src.report.load import Member, SweepData, load_sweep, ranked_groups, swept_keys
from src.report.ranking import Entry, Objective, rank, winners
from src.tracking import names
from src.tracking.opening import open_store

from ..fakes import FakeStore


def _member(lr, decay, seed, accs, outcome=Outcome.FINISHED, test_acc=0.9, losses=None):
    params = {
        "optimizer.lr": lr,
        "model.decay": decay,
        "seed": seed,
        "tracking.run_id": f"r{lr}{decay}{seed}",
        "model.hidden_size": "256",
    }
    losses = losses or [1 - a for a in accs]
    history = {"val_acc": accs, "val_loss": losses, "val_ce": losses, "train_loss": [], "train_acc": []}
    metrics = {"test_acc": test_acc} if outcome == Outcome.FINISHED else {}
    return Member(
        f"id-{lr}-{decay}-{seed}",
        f"lr={lr}",
        outcome,
        params,
        metrics,
        f"+sweep=decay_lr optimizer.lr={lr} model.decay={decay} seed={seed}",
        history,
    )


def _data(members, defaults=None):
    keys = swept_keys(members)
    return SweepData("abc", "parent", members, keys, ranked_groups(members, keys), defaults)


@pytest.fixture
def data():
    return _data(
        [
            _member("0.1", "0.0", "0", [0.8, 0.95]),
            _member("0.1", "0.0", "1", [0.85, 0.93]),
            _member("0.1", "0.0001", "0", [0.7, 0.97]),
            _member("0.1", "0.0001", "1", [0.9, 0.95]),
            _member("10000.0", "0.0", "0", [], outcome=Outcome.DIVERGED),
            _member("10000.0", "0.0", "1", [], outcome=Outcome.DIVERGED),
            _member("10000.0", "0.0001", "0", [0.1], outcome=Outcome.DIVERGED),
            _member("10000.0", "0.0001", "1", [0.1], outcome=Outcome.DIVERGED),
        ],
        defaults={"optimizer.lr": "0.1", "model.decay": "0.0001", "model.hidden_size": "256", "seed": "0"},
    )


def test_swept_keys_prefer_lr_and_decay_and_skip_seed_and_tracking(data):
    assert data.swept_keys == ["optimizer.lr", "model.decay"]
    assert len(data.groups) == 4 and all(len(g.members) == 2 for g in data.groups)


def test_settings_that_do_not_change_results_never_split_a_config():
    """A run reused from an older netsweep (another default objective) or trained with other thread
    settings is the same config: the config hash leaves these keys out, and so does the report."""
    members = [_member("0.1", "0.0", seed, [0.8, 0.9]) for seed in ("0", "1", "2")]
    members[0].params.update({"objective": "best_val_loss", "threads": "1"})
    members[1].params.update({"objective": "best_val_ce", "threads": "None"})
    data = _data(members)
    assert data.swept_keys == [] and len(data.groups) == 1 and len(data.groups[0].members) == 3


def test_a_setting_an_older_run_did_not_have_reads_as_unset():
    """A run reused from a netsweep without `patience` logged no such param; the config hash counts a missing
    setting as unset (None), and so does the report: one config, not two."""
    members = [_member("0.1", "0.0", seed, [0.8, 0.9]) for seed in ("0", "1")]
    members[1].params["patience"] = "None"
    data = _data(members)
    assert data.swept_keys == [] and len(data.groups) == 1
    members[1].params["patience"] = "5"  # set: another config
    assert swept_keys(members) == ["patience"]


def test_groups_average_over_seeds_and_rank_by_the_objective(data):
    best = data.groups[0]
    assert best.values == ("0.1", "0.0001") and best.score.rank == 1
    assert best.score.acc == pytest.approx(0.96) and best.score.acc_std == pytest.approx(0.01)
    assert [g.diverged for g in data.groups] == [False, False, True, True]
    assert math.isnan(data.groups[-1].stat("best_val_acc")[0])


def test_accuracy_ties_are_broken_by_cross_entropy_then_shown_as_ties():
    scores = rank(
        [
            Entry("a", Outcome.FINISHED, 0.9, 0.30),
            Entry("b", Outcome.FINISHED, 0.9, 0.20),
            Entry("c", Outcome.FINISHED, 0.8, 0.10),
            Entry("d", Outcome.FINISHED, 0.9, 0.20),
            Entry("e", Outcome.ERROR),
        ],
        Objective("best_val_acc"),
    )
    assert [(s.group, s.rank, s.tied) for s in scores] == [
        ("b", 1, True),
        ("d", 1, True),
        ("a", 3, False),
        ("c", 4, False),
        ("e", 5, False),
    ]
    assert [s.group for s in winners(scores)] == ["b", "d"]
    assert winners(rank([Entry("x", Outcome.KILLED)])) == []


def test_with_seeds_the_mean_ranks_and_missing_seeds_are_counted():
    scores = rank(
        [
            Entry("lucky", Outcome.FINISHED, 0.99, 0.1),
            Entry("lucky", Outcome.FINISHED, 0.80, 0.4),
            Entry("steady", Outcome.FINISHED, 0.93, 0.2),
            Entry("steady", Outcome.FINISHED, 0.92, 0.2),
            Entry("steady", Outcome.RUNNING),
        ]
    )
    assert scores[0].group == "steady" and scores[0].acc == pytest.approx(0.925)
    assert scores[0].seeds_text(3) == "2 of 3 seeds done" and scores[1].seeds_text(2) == ""


def test_leaderboard_lists_diff_runs_spread_and_ties(data):
    rows = leaderboard.rows(data)
    assert rows[0]["config_diff"] == "(defaults)" and rows[0]["seeds"] == 2
    assert rows[1]["config_diff"] == "model.decay=0"
    assert rows[0]["run_ids"] == "id-0.1-0.0001-0 id-0.1-0.0001-1"
    assert rows[0]["model.decay"] == "1e-4" and rows[2]["optimizer.lr"] == "1e4"
    text = leaderboard.to_markdown(rows, data.swept_keys)
    assert "0.9600 ± 0.0100" in text and "| 1e4 |" in text and "diverged" in text
    assert leaderboard.to_csv(rows).splitlines()[0].startswith("rank,tied,with_winner,optimizer.lr,model.decay")


def test_without_recorded_defaults_the_diff_is_against_what_all_members_share(data):
    data.defaults = None
    assert leaderboard.rows(data)[0]["config_diff"] == "model.decay=1e-4 optimizer.lr=0.1"


def test_reproduce_command_drops_the_sweep_file_and_formats_numbers(data):
    assert leaderboard.reproduce_command(data.members[0]) == "python -m src.run optimizer.lr=0.1 model.decay=0 seed=0"
    data.members[0].overrides += " tracking.ui_port=33825 model.hidden_size=16384 optimizer.lr=0.00010"
    assert leaderboard.reproduce_command(data.members[0]).endswith(
        "tracking.ui_port=33825 model.hidden_size=16384 optimizer.lr=1e-4"  # integers as typed: Hydra's int keys
    )


def test_curves_use_honest_bands_mark_divergence_and_highlight_the_top(data):
    figure = figures.sweep_curves(data, "t")
    panels = len(figure.axes) // 2
    assert panels == 2  # small multiples: one column per learning rate
    loss_axes, acc_axes = figure.axes[:panels], figure.axes[panels:]
    for ax in loss_axes:
        assert ax.get_yscale() == "log"
        for band in ax.collections:
            vertices = np.concatenate([path.vertices for path in band.get_paths()])
            assert (vertices[:, 1] > 0).all()  # a band on the log axis never reaches zero
    for ax in acc_axes:
        assert ax.get_ylim()[1] <= 1.0
        for band in ax.collections:
            vertices = np.concatenate([path.vertices for path in band.get_paths()])
            assert (vertices[:, 1] <= 1.0).all()
    markers = [line.get_marker() for ax in figure.axes for line in ax.lines]
    assert markers.count("X") == 4  # every diverged config, the two that diverged in epoch 1 included
    assert {t.get_text() for ax in figure.axes for t in ax.texts} >= {"#1", "#2"}
    figures.plt.close("all")


def test_heatmap_frames_the_ranked_winner_and_names_failures(data):
    heatmap = views.heatmap(data)
    ax = heatmap.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "0.0400 ± 0.0100\nacc 0.9600" in texts and texts.count("diverged") == 2
    (frame,) = ax.patches
    assert frame.get_xy() == (0.5, -0.5)  # column decay=1e-4, row lr=0.1
    figures.plt.close("all")


def test_a_tie_frames_every_winner_and_is_said_everywhere():
    data = _data(
        [
            _member("0.1", "0", "0", [0.9], losses=[0.2]),
            _member("0.3", "0", "0", [0.9], losses=[0.2]),
            _member("0.1", "1e-4", "0", [0.9], losses=[0.3]),
            _member("0.3", "1e-4", "0", [0.95], losses=[0.4]),
        ]
    )
    heatmap = views.heatmap(data)
    assert len(heatmap.axes[0].patches) == 2
    assert sum(t.get_text().startswith("= ") for t in heatmap.axes[0].texts) == 2
    rows = leaderboard.rows(data)
    assert [r["rank"] for r in rows] == [1, 1, 3, 4] and "| =1 |" in leaderboard.to_markdown(rows, data.swept_keys)
    assert winner_tags(data)["winner.tied_with"] == "lr=0.3 decay=0"
    figures.plt.close("all")


def test_single_swept_key_still_ranks_and_plots():
    members = [_member("0.1", "0", "0", [0.9]), _member("0.3", "0", "0", [0.8])]
    data = _data(members)
    assert data.swept_keys == ["optimizer.lr"] and data.groups[0].values == ("0.1",)
    assert list(views.views(data)) == ["heatmap.png"]
    figures.sweep_curves(data, "t")
    figures.plt.close("all")


def _stored_sweep(store_uri):
    """A two-config sweep written into a real store the way a sweep records it."""
    store = open_store(store_uri)
    experiment = store.experiment_id("netsweep")
    parent = store.create_run(experiment, "sweep s1", {names.SWEEP_ID: "s1", names.ROLE: names.ROLE_SWEEP})
    configs = []
    for lr, accs in (("0.1", [0.5, 0.9]), ("0.3", [0.6, 0.8])):
        run = store.create_run(
            experiment,
            f"lr={lr}",
            {names.SWEEP_ID: "s1", names.OVERRIDES: f"optimizer.lr={lr}"},
            parent_run_id=parent.run_id,
        )
        run.log_params({"optimizer.lr": lr, "model.decay": "0.0001", "seed": "0"})
        for epoch, acc in enumerate(accs, start=1):
            run.log_metrics(
                {"val_acc": acc, "val_loss": 1 - acc, "val_ce": 1 - acc, "train_acc": acc, "train_loss": 1 - acc}, epoch
            )
        best = {"best_val_acc": max(accs), "best_val_loss": 1 - max(accs), "best_val_ce": 1 - max(accs)}
        run.log_metrics({**best, "test_acc": max(accs)}, 2)
        run.close(Outcome.FINISHED)
        configs.append({"config_hash": lr, "run_id": run.run_id})
    parent.log_text(json.dumps({"configs": configs, "defaults": {"optimizer.lr": "0.1"}}), names.MANIFEST)
    return store, parent


def test_a_stored_sweep_is_reported_on_its_parent_and_into_a_folder(store_uri, tmp_path):
    store, parent = _stored_sweep(store_uri)
    report = build_report(store, "s1", out_dir=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "curves.png",
        "heatmap.png",
        "index.html",
        "leaderboard.csv",
        "leaderboard.md",
    ]
    logged = set(store.artifacts(parent.run_id))
    assert {f"report/{n}" for n in ("curves.png", "heatmap.png", "leaderboard.csv")} <= logged
    tags = store.run(parent.run_id).tags
    assert tags["winner.config"] == "lr=0.1" and tags["winner.val_acc"] == "0.9"
    lines = summary(report)
    assert lines[0] == "best config: lr=0.1: best_val_ce 0.1000, best_val_acc 0.9000, test_acc 0.9000 (1 run(s))"
    assert "reproduce it: python -m src.run optimizer.lr=0.1" in lines
    assert f"wrote {tmp_path / 'out' / 'curves.png'}" in lines


def test_the_report_command_reads_writes_files_and_logs_only_when_asked(store_uri, tmp_path, capsys, monkeypatch):
    store, parent = _stored_sweep(store_uri)
    monkeypatch.chdir(tmp_path)
    assert report_main(["s1", "--tracking-uri", store_uri]) == 0
    printed = capsys.readouterr().out
    assert "[sweep s1] best config: lr=0.1" in printed and "report-s1/heatmap.png" in printed
    assert (tmp_path / "report-s1" / "leaderboard.md").is_file()
    assert store.artifacts(parent.run_id) == ["sweep.json"] and "winner.config" not in store.run(parent.run_id).tags
    assert report_main([parent.run_id, "--tracking-uri", store_uri, "--out", str(tmp_path / "o"), "--log"]) == 0
    printed = capsys.readouterr().out  # the parent's run id names the sweep too
    assert str(tmp_path / "o" / "heatmap.png") in printed and "[sweep s1] best config: lr=0.1" in printed
    assert "report/heatmap.png" in store.artifacts(parent.run_id)


def test_the_report_command_refuses_an_unknown_id_or_store_in_one_line(store_uri, tmp_path, capsys):
    _stored_sweep(store_uri)
    assert report_main(["nope", "--tracking-uri", store_uri]) == 2
    assert "no sweep with id 'nope'" in capsys.readouterr().err
    assert report_main(["s1", "--tracking-uri", f"sqlite:///{tmp_path}/elsewhere/mlflow.db"]) == 2
    assert "no tracking store at" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()
    assert report_main(["s1", "--tracking-uri", "http://user:secret@127.0.0.1:5000"]) == 2
    assert "holds a password" in capsys.readouterr().err


def test_equal_accuracies_are_separated_by_cross_entropy_not_by_the_decay_penalty():
    store = FakeStore()
    experiment = store.experiment_id("netsweep")
    store.create_run(experiment, "sweep s2", {names.SWEEP_ID: "s2", names.ROLE: names.ROLE_SWEEP})
    for decay, cost, ce in (("0", 0.30, 0.30), ("1e-3", 0.32, 0.28)):  # the penalty makes decay 1e-3 look worse
        run = store.create_run(experiment, f"decay={decay}", {names.SWEEP_ID: "s2"})
        run.log_params({"model.decay": decay, "seed": "0"})
        run.log_metrics({"best_val_acc": 0.9, "best_val_loss": cost, "best_val_ce": ce}, 1)
        run.close(Outcome.FINISHED)
    data = load_sweep(store, "s2")
    assert [g.values for g in data.groups] == [("1e-3",), ("0",)] and not data.groups[0].score.tied


def test_the_loss_panel_draws_the_cross_entropy_not_the_cost():
    ce, cost = [0.5, 0.3], [0.6, 0.45]  # the cost adds the decay penalty
    member = _member("0.1", "1e-3", "0", [0.8, 0.9], losses=cost)
    member.history["val_ce"] = ce
    without_ce = _member("0.3", "1e-3", "0", [0.7, 0.8], losses=[0.9, 0.8])
    del without_ce.history["val_ce"]  # the cost never stands in for the cross-entropy
    figure = figures.sweep_curves(_data([member, without_ce]), "t")
    loss_axis = figure.axes[0]
    assert loss_axis.get_ylabel() == "Validation cross-entropy (log scale)"
    assert [list(line.get_ydata()) for line in loss_axis.lines] == [ce]
    assert member.best_val_ce == 0.3 and member.best_val_loss == 0.45
    assert math.isnan(without_ce.best_val_ce) and without_ce.best_val_loss == 0.8
