"""Ctrl-C that lands in a finalizer (the CI flake of test_cli_bugs): raised again on the main thread,
never printed as "Exception ignored", counted once."""

import signal
import sys
import time
import weakref

import pytest

from src import interrupts
from src.errors import Interrupted


@pytest.fixture
def handlers():
    hook, sigint, sigterm = sys.unraisablehook, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    yield
    signal.signal(signal.SIGINT, sigint)
    signal.signal(signal.SIGTERM, sigterm)
    sys.unraisablehook = hook


class Dropped:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the finalizer runs: its Interrupted is swallowed


def drop_with_del():
    Dropped()


class Target:
    pass


def drop_with_weakref_callback():
    target = Target()
    watch = weakref.ref(target, lambda _: signal.raise_signal(signal.SIGINT))  # as in WeakSet._remove
    del target
    assert watch() is None


@pytest.mark.parametrize("drop", [drop_with_del, drop_with_weakref_callback])
def test_a_ctrl_c_a_finalizer_swallowed_is_raised_again_on_the_next_line(handlers, drop, capsys):
    before = interrupts.received()
    reached = []
    with pytest.raises(Interrupted) as raised:
        drop()
        reached.append("after the finalizer")  # the finalizer's Interrupted did not escape it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.001)
        reached.append("never")
    assert reached == ["after the finalizer"] and raised.value.signum == signal.SIGINT
    assert interrupts.received() == before + 1  # one Ctrl-C, counted once
    assert "Exception ignored" not in capsys.readouterr().err


def test_other_unraisable_errors_still_reach_the_previous_hook(handlers, monkeypatch):
    seen = []
    monkeypatch.setattr(interrupts, "_previous_hook", lambda unraisable: seen.append(type(unraisable.exc_value)))

    class Broken:
        def __del__(self):
            raise ValueError("a finalizer's own bug")

    Broken()
    assert seen == [ValueError]


def test_a_ctrl_c_while_the_previous_hook_prints_another_error_is_raised_again(handlers, monkeypatch, capsys):
    printed = []

    def printing(unraisable):  # the default hook writing a traceback, when Ctrl-C comes
        signal.raise_signal(signal.SIGINT)
        printed.append(type(unraisable.exc_value))

    monkeypatch.setattr(interrupts, "_previous_hook", printing)

    class Broken:
        def __del__(self):
            raise ValueError("a finalizer's own bug")

    with pytest.raises(Interrupted):
        Broken()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.001)
    assert printed == [ValueError] and "Exception ignored" not in capsys.readouterr().err
