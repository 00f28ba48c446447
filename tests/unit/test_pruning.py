"""The pruning rules as published (median stopping rule, asynchronous successive halving), on curves."""

import math

import pytest

from src.pruning import PruneRule, best_so_far, decide, mean_curve

MEDIAN = PruneRule("median", min_epochs=2)
ASHA = PruneRule("asha", min_epochs=1, factor=3)


def test_curves_are_running_minima_and_seeds_average_where_they_reached():
    assert best_so_far([0.9, 0.7, 0.8, math.nan, 0.5]) == [0.9, 0.7, 0.7, 0.7, 0.5]
    assert mean_curve([[1.0, 0.8, 0.6], [0.8, 0.6]]) == [0.9, 0.7, 0.6]
    assert mean_curve([]) == []


def test_median_rule_stops_configs_worse_than_the_others_median_at_the_same_epoch():
    others = {"a": [0.9, 0.5, 0.4], "b": [0.9, 0.6, 0.5], "c": [0.9, 0.7]}
    assert "median rule at epoch 2" in decide(MEDIAN, 2, 10, [0.9, 0.65], others)  # median of 0.5, 0.6, 0.7
    assert decide(MEDIAN, 2, 10, [0.9, 0.6], others) is None  # at the median: goes on
    assert decide(MEDIAN, 1, 10, [5.0], others) is None  # before min_epochs
    assert decide(MEDIAN, 3, 10, [0.9, 0.9, 0.9], {"a": others["a"], "c": others["c"]}) is None  # 1 peer at 3
    assert decide(MEDIAN, 10, 10, [9] * 10, {k: [0.1] * 10 for k in "abc"}) is None  # the last epoch: done anyway


def test_asha_keeps_the_top_third_at_each_rung():
    assert ASHA.rungs(30) == [1, 3, 9, 27] and PruneRule("asha", 2, 2).rungs(9) == [2, 4, 8]
    peers = {str(i): [0.1 * (i + 1)] * 3 for i in range(5)}  # 0.1 .. 0.5
    assert decide(ASHA, 1, 30, [0.15] * 3, peers) is None  # 2nd of 6: in the top 6 // 3 = 2
    assert "not in the top 2 of 6" in decide(ASHA, 1, 30, [0.25] * 3, peers)
    assert decide(ASHA, 2, 30, [9.0] * 3, peers) is None  # not a rung
    lone = {"x": [0.5]}
    assert decide(ASHA, 1, 30, [0.4], lone) is None and decide(ASHA, 1, 30, [0.6], lone)  # fewer than factor: the best
    assert decide(ASHA, 1, 30, [0.4], {}) is None  # the first config to reach a rung goes on


def test_no_rule_no_pruning_and_unknown_rules_are_refused():
    assert decide(PruneRule("none"), 5, 10, [9] * 5, {"a": [0.1] * 5, "b": [0.1] * 5}) is None
    with pytest.raises(ValueError, match="unknown pruning rule"):
        decide(PruneRule("bogus"), 5, 10, [1] * 5, {})
