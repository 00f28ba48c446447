"""One objective everywhere and honest ranks: configs are ranked by the sweep's objective in its direction
(accuracy beside it), compared with the winner by a paired t-test over seeds, shown tied when the seeds
cannot tell them apart, and said to be single draws without seeds."""

import math

import pytest
from scipy import stats

from src.outcomes import Outcome
from src.report import leaderboard
from src.report.build import findings, winner_tags, winning_run
from src.report.load import Member, SweepData, ranked_groups, sweep_objective, swept_keys
from src.report.ranking import Entry, Objective, compare, rank, seeds_needed


def _run(lr, seed, ce, acc, outcome=Outcome.FINISHED, epochs=3, objective="best_val_ce", **params):
    """A member whose best val_ce and val_acc are `ce` and `acc` (its curve reaches them at its last epoch)."""
    history = {
        "val_acc": [acc - 0.1] * (epochs - 1) + [acc],
        "val_ce": [ce + 0.1] * (epochs - 1) + [ce],
        "val_loss": [ce + 0.1] * (epochs - 1) + [ce],
    }
    values = {"optimizer.lr": lr, "seed": str(seed), "objective": objective, "model.hidden_size": "256", **params}
    metrics = {"best_val_ce": ce, "best_val_acc": acc, "test_acc": acc - 0.01} if outcome == Outcome.FINISHED else {}
    return Member(f"run-{lr}-{seed}", f"lr={lr}", outcome, values, metrics, f"optimizer.lr={lr} seed={seed}", history)


def _sweep(members, defaults=None):
    keys = swept_keys(members)
    objective = sweep_objective(members, defaults)
    return SweepData("s", "p", members, keys, ranked_groups(members, keys, objective), defaults, objective)


def test_the_objective_decides_the_winner_and_its_direction():
    """The issue's case: one validation image of accuracy more, a clearly worse cross-entropy."""
    members = [_run("0.95", 0, ce=0.074, acc=0.9861), _run("0.3", 0, ce=0.051, acc=0.9815)]
    by_ce = _sweep(members)
    assert by_ce.objective == Objective("best_val_ce") and not by_ce.objective.maximize
    assert by_ce.best[0].values == ("0.3",)
    for member in members:
        member.params["objective"] = "best_val_acc"
    by_acc = _sweep(members)
    assert by_acc.objective.maximize and by_acc.best[0].values == ("0.95",)
    tags = winner_tags(by_ce)
    assert tags["winner.objective"] == "best_val_ce=0.051" and tags["objective"] == "best_val_ce (minimize)"
    assert tags["winner.val_acc"] == "0.9815"  # accuracy beside it
    assert findings(by_ce, leaderboard.rows(by_ce))[0].startswith("best config: lr=0.3: best_val_ce 0.0510")


def test_the_sweeps_objective_is_read_from_its_runs_then_its_defaults():
    trained = [_run("0.1", 0, 0.1, 0.9, objective="test_loss")]
    reused = _run("0.3", 0, 0.1, 0.9, objective="best_val_acc")
    reused.reused = True
    assert sweep_objective([*trained, reused], None) == Objective("test_loss")
    for member in trained:
        del member.params["objective"]
    del reused.params["objective"]
    assert sweep_objective([*trained, reused], {"objective": "best_val_loss"}) == Objective("best_val_loss")
    assert sweep_objective([*trained, reused], None) == Objective("best_val_ce")


def test_a_loss_objective_is_tie_broken_by_accuracy_and_the_best_seed_is_by_the_objective():
    scores = rank(
        [
            Entry("a", Outcome.FINISHED, 0.90, 0.2),
            Entry("b", Outcome.FINISHED, 0.95, 0.2),
            Entry("c", Outcome.FINISHED, 0.99, 0.3),
        ]
    )  # the default objective: best_val_ce, lower first; equal ones by accuracy, higher first
    assert [s.group for s in scores] == ["b", "a", "c"] and not any(s.tied for s in scores)
    data = _sweep([_run("0.1", 0, ce=0.2, acc=0.99), _run("0.1", 1, ce=0.1, acc=0.90)])
    assert winning_run(data).run_id == "run-0.1-1"  # its lowest cross-entropy, not its highest accuracy


def test_the_paired_test_is_scipys_and_separates_a_steady_difference_from_noise():
    seeds = range(5)
    shared_luck = [0.3, 0.1, 0.5, 0.2, 0.4]  # a seed's split is as hard for every config
    winner = [_run("0.3", s, ce=0.05 + shared_luck[s], acc=0.9) for s in seeds]
    steady = [_run("0.1", s, ce=0.06 + shared_luck[s] + 0.001 * (s % 2), acc=0.9) for s in seeds]
    noisy = [_run("0.03", s, ce=0.05 + shared_luck[s] + [0.02, -0.015, 0.01, -0.01, 0.0][s], acc=0.9) for s in seeds]
    data = _sweep(winner + steady + noisy)
    by_lr = {g.values[0]: g.score for g in data.groups}
    assert data.best[0].values == ("0.3",)
    steady_vs = by_lr["0.1"].versus
    expected = stats.ttest_rel([m.best_val_ce for m in steady], [m.best_val_ce for m in winner]).pvalue
    assert steady_vs.p_value == pytest.approx(expected) and steady_vs.distinct and not by_lr["0.1"].with_winner
    noisy_vs = by_lr["0.03"].versus
    assert not noisy_vs.distinct and by_lr["0.03"].with_winner and noisy_vs.seeds_needed > 5
    # unpaired, the steady config's 0.01 lead would drown in the seeds' spread of 0.14
    assert stats.ttest_ind([m.best_val_ce for m in steady], [m.best_val_ce for m in winner]).pvalue > 0.5
    rows = leaderboard.rows(data)
    assert [leaderboard.rank_text(r) for r in rows] == ["1", "=1 (2)", "3"]
    assert rows[1]["vs_winner"].startswith("tied (p=") and "seeds to separate" in rows[1]["vs_winner"]
    assert rows[2]["vs_winner"].startswith("worse (p=")
    said = findings(data, rows)
    assert any(
        line.startswith("cannot be told from the winner by a paired t-test") and "lr=0.03" in line for line in said
    )
    assert winner_tags(data)["winner.tied_with"] == "lr=0.03"


def test_seeds_needed_follows_the_power_of_a_paired_t_test():
    assert seeds_needed(0.0, 0.1) is None and seeds_needed(0.1, 0.0) == 2
    n = seeds_needed(0.01, 0.02)
    power = stats.nct.sf(stats.t.ppf(0.975, n - 1), n - 1, 0.01 / (0.02 / math.sqrt(n)))
    assert power > 0.75  # at n seeds the test finds the difference about 80 % of the time ...
    smaller = n - 1
    power_before = stats.nct.sf(stats.t.ppf(0.975, smaller - 1), smaller - 1, 0.01 / (0.02 / math.sqrt(smaller)))
    assert power_before < 0.8  # ... and one seed fewer would not
    assert seeds_needed(0.001, 0.02) > seeds_needed(0.01, 0.02)  # a smaller lead takes more seeds
    assert seeds_needed(1e-6, 1.0) == 1001  # "more than 1000"


def test_configs_equal_on_every_seed_are_tied_and_never_separable():
    same = [_run(lr, s, ce=0.1 + 0.01 * s, acc=0.95) for lr in ("0.1", "0.3") for s in range(3)]
    data = _sweep(same)
    assert [g.score.rank for g in data.groups] == [1, 1] and all(g.score.tied for g in data.groups)
    assert compare(data.groups[1].score, data.groups[0].score).seeds_needed is None


def test_without_seeds_ranks_are_said_to_be_single_draws():
    data = _sweep([_run("0.1", 0, 0.2, 0.9), _run("0.3", 0, 0.1, 0.9)])
    rows = leaderboard.rows(data)
    assert all(g.score.versus is None for g in data.groups) and all(r["vs_winner"] == "" for r in rows)
    assert "vs_winner" not in leaderboard.columns(rows, data.swept_keys, "best_val_ce")
    assert any("ranks are single draws" in line for line in findings(data, rows))


def test_seeds_that_trained_unequal_epochs_are_said_and_shown():
    members = [_run("0.1", 0, 0.1, 0.9, epochs=9), _run("0.1", 1, 0.3, 0.8, outcome=Outcome.PRUNED, epochs=1)]
    members[1].history["val_ce"] = [0.3]
    members[1].history["val_acc"] = [0.8]
    members += [_run("0.3", s, 0.4, 0.7, epochs=9) for s in (0, 1)]
    data = _sweep(members)
    rows = leaderboard.rows(data)
    first = next(r for r in rows if r["optimizer.lr"] == "0.1")
    assert leaderboard.cell(first, "epochs_trained") == "1-9"
    assert any("different numbers of epochs" in line and "lr=0.1 (1-9 epochs)" in line for line in findings(data, rows))


def test_settings_every_config_shares_are_said_once_not_on_every_row():
    """The issue's clutter: every row repeated data.cache_dir=... data.download=false data.name=... data.root=."""
    where = {"data.name": "fashion_mnist", "data.root": "/usr/share/x", "data.cache_dir": "~/.cache"}
    members = [_run(lr, 0, ce, 0.9, **where) for lr, ce in (("0.1", 0.2), ("0.3", 0.1))]
    defaults = {"data.name": "digits", "optimizer.lr": "0.1", "model.hidden_size": "256"}
    data = _sweep(members, defaults)
    rows = leaderboard.rows(data)
    assert [r["config_diff"] for r in rows] == ["optimizer.lr=0.3", "(defaults)"]
    assert leaderboard.common_settings(data) == "data.cache_dir=~/.cache data.name=fashion_mnist data.root=/usr/share/x"
    assert "config_diff" not in leaderboard.columns(rows, data.swept_keys, "best_val_ce")  # the swept key says it


def test_the_progress_lines_entries_rank_by_the_default_objective():
    """src/sweep/progress.py ranks (group, outcome, acc, ce) entries as they arrive."""
    scores = rank([Entry("a", Outcome.FINISHED, 0.99, 0.3), Entry("b", Outcome.FINISHED, 0.98, 0.1)])
    assert scores[0].group == "b" and scores[0].acc == 0.98 and scores[0].acc_std == 0.0


def test_a_sweep_over_seeds_alone_ranks_nothing_against_nothing():
    data = _sweep([_run("0.1", s, ce=0.1 + 0.01 * s, acc=0.9) for s in range(5)])
    said = findings(data, leaderboard.rows(data))
    assert data.swept_keys == [] and said[0].startswith("best config: lr=0.1: best_val_ce 0.1200 ± 0.0141")
    assert not any("worse" in line or "tied" in line or "single draws" in line for line in said)
