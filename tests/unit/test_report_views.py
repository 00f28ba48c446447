"""Views that fit the sweep (heatmap for grids, scatter or parallel coordinates for sampled sweeps, log axes
over decades, importance with its uncertainty), the figures' titles and axes, the self-contained page, the
list of sweeps, and what the parent run and the MLflow UI's saved view carry."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from src.config.naming import format_value
from src.outcomes import Outcome
from src.report import figures, importance, leaderboard, views
from src.report.__main__ import main as report_main
from src.report.build import build_report
from src.report.load import Member, SweepData, ranked_groups, sweep_objective, swept_keys
from src.tracking import names, ui

from ..fakes import FakeStore


def _member(values: dict, seed=0, ce=0.2, acc=0.9, outcome=Outcome.FINISHED, accs=None, data="digits"):
    params = {**values, "seed": str(seed), "data.name": data, "epochs": "3", "objective": "best_val_ce"}
    history = {"val_acc": accs or [acc - 0.05, acc], "val_ce": [ce + 0.1, ce], "val_loss": [ce + 0.1, ce]}
    if outcome != Outcome.FINISHED:
        history = {"val_acc": [], "val_ce": [], "val_loss": []}
    metrics = {"best_val_ce": ce, "best_val_acc": acc, "test_acc": acc} if outcome == Outcome.FINISHED else {}
    name = " ".join(f"{k}={v}" for k, v in values.items())
    overrides = " ".join(f"{k}={v}" for k, v in values.items())
    return Member(f"id-{name}-{seed}", name, outcome, params, metrics, overrides, history)


def _sweep(members, defaults=None):
    keys = swept_keys(members)
    objective = sweep_objective(members, defaults)
    return SweepData("sw1", "parent", members, keys, ranked_groups(members, keys, objective), defaults, objective)


def _sampled(n=20, keys=("optimizer.lr", "model.decay"), seed=3):
    """An Optuna-like sweep: continuous values over decades; the objective depends on the learning rate."""
    rng = np.random.default_rng(seed)
    members = []
    for _ in range(n):
        values = {"optimizer.lr": 10 ** rng.uniform(-3, 0), "model.decay": 10 ** rng.uniform(-6, -2)}
        values.update({k: int(rng.integers(16, 512)) for k in keys if k not in values})
        ce = 0.05 + abs(np.log10(values["optimizer.lr"]) + 1) * 0.1 + rng.normal(0, 0.005)
        members.append(_member({k: repr(values[k]) for k in keys}, ce=ce))
    return _sweep(members)


def test_a_grid_keeps_its_heatmap_and_a_sampled_sweep_gets_a_scatter_on_log_axes():
    grid = _sweep([_member({"optimizer.lr": lr, "model.decay": d}) for lr in ("0.1", "0.3") for d in ("0", "1e-4")])
    assert views.is_grid(grid) and list(views.views(grid)) == ["heatmap.png"]
    sampled = _sampled()
    assert not views.is_grid(sampled)
    drawn = views.views(sampled)
    assert list(drawn) == ["scatter.png"]
    ax = drawn["scatter.png"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # lr over 3 decades, decay over 4
    assert ax.get_xlabel() == "optimizer.lr" and "best_val_ce" in drawn["scatter.png"].axes[1].get_ylabel()
    assert drawn["scatter.png"].get_size_inches()[0] < 10  # not a 3780-pixel grid of empty cells
    rows = leaderboard.rows(sampled)
    lr = rows[0]["optimizer.lr"]
    assert len(lr) > 10 and f"| {format_value(lr, 4)} |" in leaderboard.to_markdown(rows, sampled.swept_keys)
    assert lr not in leaderboard.to_markdown(rows, sampled.swept_keys)  # people read 4 digits; the CSV has all
    figures.plt.close("all")


def test_axes_are_log_over_decades_symlog_with_a_zero_and_categories_for_text():
    assert views.scale_of(np.array([1e-3, 1e-2, 0.5])) == "log"
    assert views.scale_of(np.array([0.0, 1e-5, 1e-3])) == "symlog"
    assert views.scale_of(np.array([0.1, 0.3, 0.5])) == "linear"
    one_key = _sweep(
        [_member({"optimizer.name": n}, ce=c) for n, c in (("sgd", 0.2), ("adam", 0.1), ("momentum", 0.3))]
    )
    assert not views.is_grid(_sweep([_member({"optimizer.lr": str(v)}) for v in np.linspace(0.01, 1, 12)]))
    labels = [t.get_text() for t in views.heatmap(one_key).axes[0].get_yticklabels()]
    assert labels == ["adam", "momentum", "sgd"]
    figures.plt.close("all")


def test_three_keys_get_parallel_coordinates_and_an_importance_with_its_interval():
    data = _sampled(n=30, keys=("optimizer.lr", "model.decay", "model.hidden_size"))
    drawn = views.views(data)
    assert list(drawn) == ["parallel.png", "importance.png"]
    ticks = [t.get_text() for t in drawn["parallel.png"].axes[0].get_xticklabels()]
    assert ticks == ["lr", "decay", "hidden_size", "best_val_ce"]
    table = {k: [g.values[i] for g in data.groups] for i, k in enumerate(data.swept_keys)}
    found = {f.key: f for f in importance.importances(table, [g.score.value for g in data.groups])}
    assert found["optimizer.lr"].share > 0.5 and found["optimizer.lr"].low > found["model.decay"].high
    assert found["model.decay"].low <= found["model.decay"].share <= found["model.decay"].high
    assert found["model.hidden_size"].share < 0.2  # noise: the adjusted share does not reward chance
    figures.plt.close("all")


def test_importance_counts_failures_as_worst_and_chance_as_nothing():
    rng = np.random.default_rng(0)
    noise = [str(v) for v in rng.integers(0, 4, 40)]
    costs = list(rng.normal(size=40))
    assert importance.importances({"noise": noise}, costs)[0].share < 0.1
    decides = ["a"] * 20 + ["b"] * 20
    assert importance.importances({"k": decides}, [0.1] * 20 + [float("nan")] * 20)[0].share == pytest.approx(1.0)


def test_titles_say_the_data_the_epochs_and_the_objective():
    data = _sweep(
        [_member({"optimizer.lr": lr}, data="fashion_mnist", accs=[0.80, 0.86, 0.89]) for lr in ("0.1", "0.3")]
    )
    figure = figures.sweep_curves(data)
    title = figure.get_suptitle()
    assert "fashion_mnist" in title and "3 epochs" in title and "best_val_ce (lower is better)" in title
    low, high = figure.axes[1].get_ylim()  # the accuracy axis hugs Fashion's 0.80-0.89, not 0.78-1.0
    assert high <= 0.92 and low <= 0.80 and (0.89 - low) / (high - low) > 0.8
    figures.plt.close("all")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images, self.tags, self.rows = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        found = dict(attrs)
        self.rows += tag == "tr"
        if tag == "img":
            self.images.append(found["src"])
        for key in ("href", "src"):
            if key in found and tag != "img":
                self.links.append(found[key])


def _stored(store, members, sweep_id="sw1", command="+sweep=decay_lr"):
    experiment = store.experiment_id("netsweep")
    parent = store.create_run(
        experiment,
        f"sweep {sweep_id}",
        {names.SWEEP_ID: sweep_id, names.ROLE: names.ROLE_SWEEP, names.SWEEP_OVERRIDES: command},
    )
    configs = []
    for member in members:
        run = store.create_run(experiment, member.name, {names.SWEEP_ID: sweep_id, names.OVERRIDES: member.overrides})
        run.log_params(member.params)
        curves = zip(member.history["val_acc"], member.history["val_ce"], strict=True)
        for epoch, (acc, ce) in enumerate(curves, start=1):
            run.log_metrics({"val_acc": acc, "val_ce": ce, "val_loss": ce}, epoch)
        run.log_metrics(member.metrics, 2)
        run.close(member.outcome)
        configs.append({"config_hash": member.run_id, "run_id": run.run_id})
    parent.log_text(json.dumps({"configs": configs, "defaults": {"optimizer.lr": "0.1"}}), names.MANIFEST)
    parent.close(Outcome.FINISHED)
    return parent


def test_the_page_is_one_self_contained_file_with_everything_in_it(tmp_path):
    store = FakeStore()
    members = [
        _member({"optimizer.lr": lr, "model.decay": d}, ce=c) for lr, d, c in [("0.1", "0", 0.2), ("0.3", "0", 0.1)]
    ]
    _stored(store, members + [_member({"optimizer.lr": "3", "model.decay": "0"}, outcome=Outcome.DIVERGED)])
    build_report(store, "sw1", out_dir=tmp_path, log=False)
    text = (tmp_path / "index.html").read_text()
    page = _Page()
    page.feed(text)
    assert page.links == [] and "<script" not in text  # nothing fetched from anywhere: opens from disk
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.rows == 1 + 3  # the leaderboard: a header and a row per config
    assert "python -m src.run optimizer.lr=0.3 model.decay=0" in text  # how to reproduce the winner
    assert "python -m src.run -m +sweep=decay_lr" in text and "best_val_ce (lower is better)" in text
    assert 'class="winner"' in text and 'class="failed"' in text


def test_the_parent_shows_the_result_in_the_runs_table_and_its_link_opens_a_saved_view():
    store = FakeStore()
    members = [_member({"optimizer.lr": lr}, ce=c, acc=a) for lr, c, a in [("0.1", 0.2, 0.9), ("0.3", 0.1, 0.95)]]
    parent = _stored(store, members)
    build_report(store, "sw1")
    record = store.run(parent.run_id)
    assert record.metrics["best_val_ce"] == pytest.approx(0.1) and record.metrics["best_val_acc"] == 0.95
    assert record.params["optimizer.lr"] == "0.1, 0.3" and record.params["data.name"] == "digits"
    assert record.name == "digits, 3 epochs, lr, 2 configs (sweep sw1)"
    build_report(store, "sw1")  # again: params already there are left as they are (MLflow refuses a change)
    state = json.loads(store.experiment_tags[record.experiment_id][ui.view_tag("sw1")])
    assert state["searchFilter"] == "tags.sweep_id = 'sw1'" and "orderByKey" not in state  # sorted, runs go flat
    assert state["columnOrder"][:2] == ["attributes.`Run Name`", "metrics.`best_val_ce`"]
    assert state["selectedColumns"][:4] == [
        "metrics.`best_val_ce`",
        "metrics.`best_val_acc`",
        "metrics.`test_acc`",
        "params.`optimizer.lr`",
    ]
    link = ui.runs_table_url("sqlite:///x.db", "1", 5001, "sw1")
    assert (
        link
        == "http://127.0.0.1:5001/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=netsweep-sw1"
    )


def test_the_report_command_without_an_id_lists_the_stores_sweeps(store_uri, capsys):
    from src.tracking.opening import open_store

    store = open_store(store_uri)
    assert report_main(["--tracking-uri", store_uri]) == 0
    assert "no sweeps in" in capsys.readouterr().out
    _stored(store, [_member({"optimizer.lr": lr}, ce=c) for lr, c in [("0.1", 0.2), ("0.3", 0.1)]], "first")
    _stored(store, [_member({"optimizer.lr": "0.1"}, data="fashion_mnist")], "second", "data=fashion_mnist")
    build_report(store, "first")
    assert report_main(["--tracking-uri", store_uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sweep", "started", "data", "configs", "outcome", "winner"]
    second, first = lines[1].split(), lines[2].split()  # newest first
    assert second[0] == "second" and "(no report yet)" in lines[1]
    assert first[0] == "first" and first[3] == "digits" and "lr=0.3 (best_val_ce=0.1)" in lines[2]
    assert lines[-1].startswith("2 sweep(s) in")
    assert second[3] == "fashion_mnist"  # no report yet: the data is read from its command line
