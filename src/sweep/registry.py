"""The sweeps open in this process, so whoever ends the command (Hydra's multirun end, the CLI's error
handler, interpreter exit) can finish each exactly once. Imports nothing heavy: the CLI imports it."""

import atexit

_OPEN: list = []


def register(sweep) -> None:
    """`sweep` has a `finish(interrupted)` that is safe to call more than once."""
    _OPEN.append(sweep)


def finish_all(interrupted: bool = False) -> None:
    while _OPEN:
        _OPEN.pop(0).finish(interrupted)


atexit.register(finish_all)
