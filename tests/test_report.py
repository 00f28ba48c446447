"""Report logic without MLflow: swept keys, grouping over seeds, ranking, leaderboard, figures."""

import math

import pytest

from src import plots
from src.report import (
    ConfigGroup, Member, SweepData, group_members, leaderboard_rows, ranked, reproduce_command, swept_keys, to_markdown,
)


def _member(lr, decay, seed, accs, outcome="finished", test_acc=0.9):
    params = {"optimizer.lr": lr, "model.decay": decay, "seed": seed, "tracking.run_id": f"r{lr}{decay}{seed}",
              "model.hidden_size": "256"}
    history = {"val_acc": accs, "val_loss": [1 - a for a in accs], "train_loss": [], "train_acc": []}
    metrics = {"test_acc": test_acc, "best_val_loss": min(history["val_loss"])} if outcome == "finished" else {}
    return Member(f"id-{lr}-{decay}-{seed}", f"lr={lr}", outcome, params, metrics,
                  f"+sweep=decay_lr optimizer.lr={lr} model.decay={decay} seed={seed}", history)


@pytest.fixture
def data():
    members = [
        _member("0.1", "0.0", "0", [0.8, 0.95]), _member("0.1", "0.0", "1", [0.85, 0.93]),
        _member("0.1", "0.0001", "0", [0.7, 0.97]), _member("0.1", "0.0001", "1", [0.9, 0.95]),
        _member("10000.0", "0.0", "0", [], outcome="diverged"), _member("10000.0", "0.0", "1", [], outcome="diverged"),
        _member("10000.0", "0.0001", "0", [0.1], outcome="diverged"),
        _member("10000.0", "0.0001", "1", [0.1], outcome="diverged"),
    ]
    keys = swept_keys(members)
    return SweepData("abc", "parent", members, keys, group_members(members, keys))


def test_swept_keys_prefer_lr_and_decay_and_skip_seed_and_tracking(data):
    assert data.swept_keys == ["optimizer.lr", "model.decay"]
    assert len(data.groups) == 4 and all(len(g.members) == 2 for g in data.groups)


def test_groups_average_over_seeds_and_rank_by_best_val_acc(data):
    best = ranked(data.groups)[0]
    assert best.values == ("0.1", "0.0001")
    mean, std = best.stat("best_val_acc")
    assert mean == pytest.approx(0.96) and std == pytest.approx(0.01)
    assert [g.diverged for g in ranked(data.groups)] == [False, False, True, True]
    assert math.isnan(ranked(data.groups)[-1].stat("best_val_acc")[0])


def test_leaderboard_lists_diff_runs_and_spread(data):
    rows = leaderboard_rows(data, {"optimizer.lr": "0.1", "model.decay": "0.0001", "model.hidden_size": "256",
                                   "seed": "0"})
    assert rows[0]["config_diff"] == "(defaults)" and rows[0]["seeds"] == 2
    assert rows[1]["config_diff"] == "model.decay=0.0"
    assert rows[0]["run_ids"] == "id-0.1-0.0001-0 id-0.1-0.0001-1"
    text = to_markdown(rows, data.swept_keys)
    assert "0.9600 ± 0.0100" in text and "| 1e4 |" in text and "diverged" in text


def test_reproduce_command_drops_the_sweep_file(data):
    assert reproduce_command(data.members[0]) == "python -m src.run optimizer.lr=0.1 model.decay=0.0 seed=0"


def test_figures_draw_bands_diverged_marks_and_a_framed_winner(data):
    curves = plots.sweep_curves(data, "t")
    loss_ax, acc_ax = curves.axes[:2]
    assert len(acc_ax.collections) == 3  # a mean +- std band per config with curves (one diverged late)
    assert any(line.get_marker() == "X" for line in acc_ax.lines)  # where a config diverged
    assert "diverged in epoch 1: lr=1e4 decay=0" in curves._suptitle.get_text()
    heatmap = plots.sweep_heatmap(data, "t")
    texts = [t.get_text() for t in heatmap.axes[0].texts]
    assert "0.9600\n± 0.0100" in texts and texts.count("diverged") == 2
    assert len(heatmap.axes[0].patches) == 1  # the winner's frame
    plots.plt.close("all")


def test_single_swept_key_still_ranks_and_plots():
    members = [_member("0.1", "0", "0", [0.9]), _member("0.3", "0", "0", [0.8])]
    members[1].params["model.decay"] = "0"
    keys = swept_keys(members)
    assert keys == ["optimizer.lr"]
    data = SweepData("x", "p", members, keys, group_members(members, keys))
    assert ranked(data.groups)[0].values == ("0.1",)
    plots.sweep_heatmap(data, "t")
    plots.sweep_curves(data, "t")
    plots.plt.close("all")
    assert isinstance(data.groups[0], ConfigGroup)
