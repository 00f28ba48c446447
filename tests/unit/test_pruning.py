"""The pruning rules as published (median stopping rule, asynchronous successive halving), on curves; the
decision among a sweep's peers, on plain records; and the sweep's pruner that reads them from its runs."""

import math
import time

import pytest

from src.experiment.epochs import SweepPruner, encode_curve
from src.experiment.job import SweepJob
from src.pruning import (
    Peer,
    PruneRule,
    Rule,
    best_so_far,
    curve_metric,
    curve_values,
    decide,
    halve,
    mean_curve,
    prune_among,
)
from src.tracking import names

from ..fakes import FakeStore

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
    assert PruneRule("asha").rule is Rule.asha  # named by its value, as in the launcher's settings
    with pytest.raises(ValueError, match="unknown pruning rule 'bogus'; use one of none, median, asha"):
        PruneRule("bogus")


def test_each_other_config_counts_once_with_its_longest_curve_and_never_this_configs_own_runs():
    mine = Peer("mine", "g-mine", [0.9, 0.9])
    runs = [
        Peer("mine", "g-mine", [0.1, 0.1, 0.1]),  # an earlier attempt of this config: not a peer
        Peer("a", "g-a", [0.5, 0.4]),
        Peer("a", "g-a", [0.5, 0.4, 0.3]),  # config a trained again: one peer, the longer curve
    ]
    assert prune_among(MEDIAN, 2, 6, mine, runs) is None  # one peer: the median rule waits for MIN_PEERS
    runs.append(Peer("b", "g-b", [0.6, 0.5]))
    assert "worse than the median 0.45 of 2 other configs" in prune_among(MEDIAN, 2, 6, mine, runs)
    assert prune_among(MEDIAN, 2, 6, Peer("mine", "g-mine", [0.9, 0.3]), runs) is None  # better than both


def test_seeds_are_judged_on_their_mean_and_follow_a_sibling_pruned_in_this_attempt():
    seed1 = Peer("seed1", "g", [0.2])
    others = [Peer("x", "x", [0.3]), Peer("y", "y", [0.4])]
    assert prune_among(ASHA, 1, 30, seed1, others) is None  # alone: the best of three goes on
    with_seed0 = [*others, Peer("seed0", "g", [0.9])]
    assert "not in the top 1 of 3" in prune_among(ASHA, 1, 30, seed1, with_seed0)  # the mean of 0.2 and 0.9
    by_seed = PruneRule("asha", min_epochs=1, factor=3, by_config=False)
    assert prune_among(by_seed, 1, 30, Peer("seed1", "seed1", [0.2]), with_seed0) is None  # each seed alone
    pruned = [*with_seed0, Peer("seed2", "g", [0.9], pruned="asha rung at epoch 1")]
    assert prune_among(ASHA, 1, 30, seed1, pruned) == "pruned with its config (asha rung at epoch 1)"
    assert prune_among(by_seed, 1, 30, Peer("seed1", "seed1", [0.2]), pruned) is None  # not followed by seed


def test_a_seed_arriving_at_a_rung_its_config_went_on_from_goes_on_too():
    """One decision per config per rung: seed 0 passed the epoch-1 rung (it trained on to epoch 3), so
    seed 2, later and worse on its own, follows that decision rather than being pruned apart."""
    others = [Peer("x", "x", [0.3, 0.2]), Peer("y", "y", [0.4, 0.3]), Peer("seed0", "g", [0.2, 0.15, 0.1])]
    assert prune_among(ASHA, 1, 30, Peer("seed2", "g", [0.9]), others) is None
    assert "not in the top" in prune_among(ASHA, 1, 30, Peer("seed2", "g", [0.9]), others[:2])  # alone: pruned
    by_seed = PruneRule("asha", min_epochs=1, factor=3, by_config=False)
    assert prune_among(by_seed, 1, 30, Peer("seed2", "seed2", [0.9]), others) is not None  # by seed: its own


def _publish(store, experiment, key, group, curve, pruned=None):
    run = store.create_run(
        experiment,
        key,
        {names.SWEEP_ID: "s1", names.CONFIG_HASH: key, names.GROUP_HASH: group, names.CURVE: encode_curve(curve)},
    )
    if pruned:
        run.set_tags({names.PRUNED: pruned})
    return run


def _pruner(store, experiment, key, group, rule, started_ms=0, epochs=6):
    job = SweepJob("me", store.uri, sweep_id="s1", experiment_id=experiment, prune=rule, attempt_started_ms=started_ms)
    return SweepPruner(store, job, key, group, epochs)


def test_the_sweep_pruner_counts_each_other_config_once_and_never_this_configs_earlier_attempts():
    store = FakeStore()
    experiment = store.experiment_id("e")
    _publish(store, experiment, "mine", "g-mine", [0.1, 0.1, 0.1], pruned="asha rung at epoch 1")  # an older attempt
    _publish(store, experiment, "a", "g-a", [0.5, 0.4])
    _publish(store, experiment, "a", "g-a", [0.5, 0.4, 0.3])  # the same config trained again: one peer
    median = _pruner(store, experiment, "mine", "g-mine", MEDIAN)
    assert median(2, [0.9, 0.9]) is None  # one peer only: the median rule waits for MIN_PEERS
    _publish(store, experiment, "b", "g-b", [0.6, 0.5])
    assert "worse than the median 0.45 of 2 other configs" in median(2, [0.9, 0.9])
    assert median(1, [0.9]) is None and median(6, [0.9] * 6) is None  # before min_epochs, and at the last epoch


def test_a_link_to_a_reused_result_is_its_config_not_another_peer():
    store = FakeStore()
    experiment = store.experiment_id("e")
    for key in ("mine", "a"):  # links standing for results an earlier sweep trained
        store.create_run(
            experiment,
            f"{key} (reused)",
            {
                names.SWEEP_ID: "s1",
                names.REUSED_CONFIG_HASH: key,
                names.GROUP_HASH: key,
                names.CURVE: encode_curve([0.5, 0.4]),
            },
        )
    _publish(store, experiment, "a", "a", [0.5, 0.4])  # config a trained again in this sweep
    median = _pruner(store, experiment, "mine", "mine", MEDIAN)
    assert median(2, [0.9, 0.9]) is None  # one peer (a), not three: the median rule waits
    _publish(store, experiment, "b", "b", [0.6, 0.5])
    assert "of 2 other configs" in median(2, [0.9, 0.9])


def test_a_seed_pruned_in_this_attempt_stops_its_siblings_but_one_pruned_in_an_earlier_attempt_does_not():
    store = FakeStore()
    experiment = store.experiment_id("e")
    _publish(store, experiment, "seed0", "g", [0.9], pruned="asha rung at epoch 1")
    attempt = time.time_ns() // 1_000_000 + 1
    sibling = _pruner(store, experiment, "seed1", "g", ASHA, started_ms=attempt)
    assert sibling(1, [0.2]) is None  # seed0's curve is averaged in, and alone at the rung it goes on
    _publish(store, experiment, "seed2", "g", [0.9], pruned="asha rung at epoch 1").record.start_time_ms = attempt
    assert sibling(1, [0.2]) == "pruned with its config (asha rung at epoch 1)"
    assert _pruner(store, experiment, "seed1", "g", ASHA, started_ms=attempt, epochs=1)(1, [0.2]) is None


def test_between_asha_rungs_a_config_without_seeds_does_not_read_the_store():
    store = FakeStore()
    experiment = store.experiment_id("e")
    _publish(store, experiment, "a", "a", [0.1, 0.1, 0.1])
    searches = []
    search = store.runs
    store.runs = lambda *args, **kwargs: searches.append(args) or search(*args, **kwargs)
    job = SweepJob("me", store.uri, sweep_id="s1", experiment_id=experiment, prune=ASHA, seeded=False)
    alone = SweepPruner(store, job, "mine", "mine", 9)  # rungs at epochs 1 and 3
    assert alone(2, [0.9, 0.9]) is None and not searches
    assert alone(3, [0.9, 0.9, 0.9]) is not None and len(searches) == 1  # at a rung it reads, and is pruned
    seeded = SweepPruner(
        store, SweepJob("me", store.uri, sweep_id="s1", experiment_id=experiment, prune=ASHA), "mine", "g", 9
    )
    assert seeded(2, [0.9, 0.9]) is None and len(searches) == 2  # a seed reads every epoch: its siblings may stop


SHA = PruneRule("sha", min_epochs=1, factor=3)


def _peer(key, curve, group=None):
    return Peer(key, group or key, curve)


def test_sha_decides_a_rung_once_for_all_waiting_configs_and_keeps_the_top_third():
    assert SHA.synchronous and SHA.rungs(30) == [1, 3, 9, 27]
    assert not SHA.needs_peers(1, 30, seeded=True)  # no config decides for itself as it trains
    waiting = [_peer(str(i), [0.1 * (i + 1)]) for i in range(6)]  # 0.1 .. 0.6, all at the rung
    verdicts = halve(SHA, 1, waiting)
    assert sorted(verdicts) == ["2", "3", "4", "5"]  # 6 // 3 = 2 go on, whatever order they arrived in
    assert "sha rung at epoch 1" in verdicts["5"] and "not in the top 2 of 6" in verdicts["5"]
    assert halve(SHA, 1, list(reversed(waiting))) == verdicts
    tied = halve(SHA, 1, [_peer("a", [0.4]), _peer("b", [0.4]), _peer("c", [0.5])])
    assert sorted(tied) == ["c"]  # one place, two configs tied for it: both go on
    assert halve(SHA, 1, [_peer("solo", [9.0])]) == {}  # alone: nothing to compare with


def test_sha_counts_the_sweeps_other_runs_that_reached_the_rung_and_only_those():
    waiting = [_peer("a", [0.5, 0.4, 0.3]), _peer("b", [0.6, 0.5, 0.45])]
    earlier = [_peer("x", [0.5, 0.2, 0.1]), _peer("x", [0.5]), _peer("y", [0.4, 0.35])]  # y stopped before 3
    verdicts = halve(SHA, 3, waiting, earlier)
    assert sorted(verdicts) == ["a", "b"] and "top 1 of 3" in verdicts["b"]  # x (its longest run) leads at 3
    assert sorted(halve(SHA, 3, waiting, [_peer("y", [0.4, 0.35])])) == ["b"]  # y never reached epoch 3


def test_sha_by_config_gives_the_seeds_of_a_config_one_score_and_one_decision():
    waiting = [
        _peer("a0", [0.30], "a"), _peer("a1", [0.50], "a"),  # mean 0.40
        _peer("b0", [0.35], "b"), _peer("b1", [0.35], "b"),  # mean 0.35
        _peer("c0", [0.90], "c"), _peer("c1", [0.20], "c"),  # mean 0.55
    ]  # fmt: skip
    assert sorted(halve(SHA, 1, waiting)) == ["a0", "a1", "c0", "c1"]  # 3 configs: the best 1 goes on
    by_seed = PruneRule("sha", 1, 3, by_config=False)
    assert sorted(halve(by_seed, 1, waiting)) == ["a1", "b0", "b1", "c0"]  # 6 seeds: c1 and a0 go on


def test_pruning_follows_the_sweeps_objective_accuracy_curves_held_negated():
    assert curve_metric("best_val_acc") == "val_acc" and curve_metric("test_acc") == "val_ce"
    assert best_so_far(curve_values("val_acc", [0.5, 0.7, 0.6])) == [-0.5, -0.7, -0.7]  # the best so far: 0.7
    by_acc = PruneRule("sha", 1, 3, metric="val_acc")
    waiting = [Peer(k, k, curve_values("val_acc", [acc])) for k, acc in zip("abc", (0.9, 0.8, 0.7), strict=True)]
    verdicts = halve(by_acc, 1, waiting)
    assert sorted(verdicts) == ["b", "c"] and "best val_acc 0.8 is not in the top 1" in verdicts["b"]
    assert by_acc.identity != PruneRule("sha", 1, 3).identity  # pruned on another score: another sweep
