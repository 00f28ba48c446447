"""Ctrl-C and SIGTERM end a run cleanly: they raise `Interrupted` at once, except while the main thread
is inside a tracking write, where they wait until the write is done. An interrupted SQLite transaction
would otherwise leave its connection holding the store's lock, and closing the run as KILLED would
then wait on it."""

import contextlib
import signal
import threading

from src.errors import Interrupted

_shield_depth = 0  # tracking writes in progress on the main thread
_stop_requested = threading.Event()  # a worker's process is ending (a Slurm job's SIGTERM): stop training
_pending_signal = None
_received = 0  # signals that arrived: a library may have swallowed the Interrupted one raised


def _on_signal(signum, frame) -> None:
    global _pending_signal, _received
    _received += 1
    if _shield_depth:
        _pending_signal = signum
        return
    raise Interrupted(f"signal {signum}")


def install() -> None:
    """Route SIGINT and SIGTERM here (only possible, and only needed, on the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


@contextlib.contextmanager
def shielded():
    """Hold back Ctrl-C and SIGTERM until the block is done (other threads are never interrupted)."""
    global _shield_depth, _pending_signal
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1
        if _shield_depth == 0 and _pending_signal is not None:
            signum, _pending_signal = _pending_signal, None
            raise Interrupted(f"signal {signum}")


def received() -> int:
    """How many times Ctrl-C or SIGTERM arrived, counting those whose `Interrupted` was caught on the way
    (Dask's client turns an interrupted wait into a cancelled task): compare before and after a call."""
    return _received


_stop_why = ""


def request_stop(why: str = "SIGTERM") -> None:
    """Ask the training on this process's other threads to stop at its next step (a Dask worker's main thread
    got SIGTERM: its Slurm job was cancelled, ran out of time or was preempted). The run ends `killed`, its
    checkpoint whole, and continues from it in the next attempt."""
    global _stop_why
    _stop_why = why
    _stop_requested.set()


def stop_requested() -> bool:
    """Whether `request_stop` was called: this process is ending, so an `Interrupted` raised on one of its
    threads means "go on elsewhere", not "the user pressed Ctrl-C"."""
    return _stop_requested.is_set()


def check_stop() -> None:
    """Raise `Interrupted` on a training thread once `request_stop` was called (a step boundary: no
    checkpoint or tracking write is cut in half)."""
    if _stop_requested.is_set():
        raise Interrupted(f"{_stop_why}: the worker's process is ending")
