"""Ctrl-C and SIGTERM end a run cleanly: they raise `Interrupted` at once, except while the main thread
is inside a tracking write, where they wait until the write is done. An interrupted SQLite transaction
would otherwise leave its connection holding the store's lock, and closing the run as KILLED would
then wait on it.

A signal can also land in a finalizer (a `__del__` or a weak reference's callback that the garbage
collector runs between two lines of ours); Python prints what a finalizer raises as "Exception ignored"
and drops it. `install` hooks that: such an `Interrupted` is not printed but sent to the main thread again,
where it lands on the next line of ours, so a Ctrl-C is neither lost nor shown as a traceback."""

import contextlib
import signal
import sys
import threading
import time

from src.errors import Interrupted

_shield_depth = 0  # tracking writes in progress on the main thread
_stop_requested = threading.Event()  # a worker's process is ending (a Slurm job's SIGTERM): stop training
_pending_signal = None
_received = 0  # signals that arrived: a library may have swallowed the Interrupted one raised
_resent = 0  # signals sent again after a finalizer swallowed them (already counted in _received)
_in_hook = False  # the main thread is inside `_on_unraisable`: a signal now must not raise there
_previous_hook = sys.unraisablehook
RESEND_AFTER_S = 0.01  # time for the finalizer that swallowed a signal to return before it comes again


def _on_signal(signum, frame) -> None:
    global _pending_signal, _received, _resent
    if _resent:
        _resent -= 1
    else:
        _received += 1
    if _in_hook:
        _resend(signum)
        return
    if _shield_depth:
        _pending_signal = signum
        return
    raise Interrupted(f"signal {signum}", signum=signum)


def _resend(signum: int) -> None:
    """Deliver `signum` to the main thread again shortly, from a helper thread (a real signal: it also
    wakes a main thread blocked in a wait)."""
    global _resent
    _resent += 1
    main = threading.main_thread().ident
    assert main is not None  # the main thread has started: this code runs on it

    def send() -> None:
        time.sleep(RESEND_AFTER_S)
        with contextlib.suppress(OSError):  # the main thread ended meanwhile: nothing is left to stop
            signal.pthread_kill(main, signum)

    threading.Thread(target=send, name="netsweep-resend-signal", daemon=True).start()


def _on_unraisable(unraisable) -> None:
    """A finalizer swallowed an `Interrupted` of ours: send its signal again instead of printing it."""
    global _in_hook
    error = unraisable.exc_value
    main = threading.current_thread() is threading.main_thread()
    _in_hook = main  # a signal while the hook runs (the previous one printing a traceback) comes again after it
    try:
        if isinstance(error, Interrupted) and error.signum is not None and main:
            _resend(error.signum)
        else:
            _previous_hook(unraisable)
    finally:
        _in_hook = False


def install() -> None:
    """Route SIGINT and SIGTERM here (only possible, and only needed, on the main thread)."""
    global _previous_hook
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        if sys.unraisablehook is not _on_unraisable:
            _previous_hook, sys.unraisablehook = sys.unraisablehook, _on_unraisable


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
            raise Interrupted(f"signal {signum}", signum=signum)


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
