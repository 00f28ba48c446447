"""Figure 1 drawn again on one thread's figure is the Figure 1 a new figure gives, pixel for pixel, whatever
the run drawn before it (a log-scaled loss, marks, more or fewer epochs, diverged values)."""

import io
import threading

import matplotlib.image
import numpy as np
import pytest

from src import plots


def _curves(epochs: int, seed: int, spike: bool = False, blown: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    metrics = {key: list(np.sort(rng.random(epochs))[::-1] + 0.05) for key in ("train_loss", "val_loss")}
    metrics.update({key: list(np.sort(rng.random(epochs))) for key in ("train_acc", "val_acc")})
    if spike:
        metrics["train_loss"][0] = 80.0
    if blown:  # a run that diverged: its last epoch's losses are not finite
        metrics["train_loss"][-1], metrics["val_loss"][-1] = float("inf"), float("nan")
    return metrics


RUNS = [  # drawn in this order on one figure: each run follows one that left different state behind
    (_curves(30, 0), dict(best_epoch=21)),
    (_curves(4, 1, spike=True), dict(best_epoch=2, diverged_at=4)),
    (_curves(12, 2), dict(best_epoch=5, stopped_at=(9, "pruned"))),
    (_curves(1, 3), {}),
    (_curves(6, 4, blown=True), dict(best_epoch=3, diverged_at=6)),
    (_curves(0, 5), {}),
    (_curves(40, 6), dict(best_epoch=40, stopped_at=(40, "patience"))),
]


def _pixels(figure) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")


def test_a_figure_drawn_again_is_the_figure_a_new_one_gives():
    plots._DRAWN.figure = None  # this thread's figure starts anew, then draws every run below
    for index, (metrics, marks) in enumerate(RUNS):
        title = f"run {index} · lr 0.1 · decay 1e-4"
        marked = (marks.get("best_epoch"), marks.get("diverged_at"), marks.get("stopped_at"))
        fresh = _pixels(plots._FigureOne().draw(metrics, title, *marked))
        again = _pixels(plots.figure_one(metrics, title, *marked))
        assert fresh.shape == again.shape == (420, 1100, 4)
        assert np.array_equal(fresh, again), f"run {index} differs from a new figure's"


def test_each_thread_draws_on_a_figure_of_its_own():
    here = plots.figure_one(*RUNS[0][:1], "here")
    assert plots.figure_one(*RUNS[2][:1], "here again") is here
    there = []
    worker = threading.Thread(target=lambda: there.append(plots.figure_one(*RUNS[0][:1], "there")))
    worker.start()
    worker.join()
    assert there[0] is not here


@pytest.mark.parametrize("marks", [dict(best_epoch=3), dict(diverged_at=2, stopped_at=(2, "pruned"))])
def test_marks_of_the_run_before_are_gone(marks):
    figure = plots.figure_one(_curves(5, 7), "first", **marks)
    figure = plots.figure_one(_curves(5, 8), "second")
    labels = [line.get_label() for ax in figure.axes for line in ax.lines]
    assert labels == ["train (in-sample)", "validation"] * 2
    assert figure.axes[0].get_legend() is not None and figure._suptitle.get_text() == "second"
