"""The process that writes a single run's records to its tracking store (src/tracking/remote.py starts it and
speaks to it): it imports mlflow and opens the store while the run composes its config and trains, then
carries out the run's requests in the order they were sent.

A thread reads requests as they come, so the run never waits to send one. The process ignores Ctrl-C and SIGTERM (the
run handles them, and closes its run as killed through this process). When the run's end of the pipe closes without
`finish` (the run's process was killed), the runs it left open are closed killed; when it closes before
anything was asked (a command line rejected at once), this process exits at once, mlflow or not."""

import contextlib
import importlib
import os
import pickle
import queue
import signal
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from src.outcomes import RESULTS, Outcome

OWNING = ("create_run", "create_run_in", "attach_run")  # the runs these return are open until closed
ENDED_BY = ("close", "reschedule")  # a run left waiting for a worker (rescheduled) is not open either
KILLED_REASON = "its process ended before it closed the run (killed?); a rerun continues it from its checkpoint"


class Server:
    """The store and the runs the requests name, and the answers sent back."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.store: Any = None
        self.failure: BaseException | None = None  # the store could not be opened: every request fails so
        self.runs: dict[int, Any] = {}
        self.open: set[int] = set()  # handles of runs this process opened and has not closed
        self.failed: set[int] = set()  # handles of runs a write to failed: not closed as a result

    def answer(self, number: int, ok: bool, value: Any) -> None:
        """Send an answer; none when the run's process is gone (what it sent is still written, its runs closed).
        A value that cannot be sent (pickled) is answered as that failure, so that nobody waits for it forever."""
        try:
            self.connection.send((number, ok, value))
        except OSError:
            pass
        except Exception as exc:
            with contextlib.suppress(OSError):
                self.connection.send((number, False, RuntimeError(f"its answer could not be sent: {exc!r}")))

    def serve(self, inbox: "queue.SimpleQueue[tuple | None]") -> None:
        while (request := inbox.get()) is not None:
            number, answer, target, method, args, kwargs = request
            try:
                value = self.carry_out(target, method, args, kwargs)
            except Exception as exc:
                if target is not None:
                    self.failed.add(target)
                self.answer(number, False, _portable(exc))
                continue
            if answer:
                self.answer(number, True, value)
            if method == "finish":
                return
        self.close_open_runs()

    def carry_out(self, target: int | None, method: str, args: tuple, kwargs: dict) -> Any:
        if method == "finish":
            return None
        if method == "open":
            self.open_store(*args)
            return None
        if self.failure is not None:
            raise self.failure
        return self.on_store(method, args, kwargs) if target is None else self.on_run(target, method, args, kwargs)

    def open_store(self, uri: str) -> None:
        from src.tracking.opening import open_store  # deferred: it imports mlflow's side (serve's preload did)

        try:
            self.store = open_store(uri)
        except Exception as exc:
            self.failure = exc
            raise

    def on_store(self, method: str, args: tuple, kwargs: dict) -> Any:
        """A store's method; one that hands out a run (`_handle`) keeps it under that number, answering its id."""
        handle = kwargs.pop("_handle", None)
        result = getattr(self.store, method)(*args, **kwargs)
        if handle is None:
            return result
        self.runs[handle] = result
        if method in OWNING:
            self.open.add(handle)
        return result.run_id

    def on_run(self, target: int, method: str, args: tuple, kwargs: dict) -> Any:
        run = self.runs[target]
        if method == "close" and target in self.failed and args[0] in RESULTS:  # the run sees the failure first
            raise RuntimeError(f"the run was not closed {args[0].value}: a write to it failed before")
        if method == "log_file":
            name, content, folder = args
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / name
                path.write_bytes(content)
                run.log_file(path, folder)
            return None
        result = getattr(run, method)(*args, **kwargs)
        if method in ENDED_BY:
            self.open.discard(target)
        elif method == "reopen":
            self.open.add(target)
        return result

    def close_open_runs(self) -> None:
        """The run's process is gone without closing its runs: they end killed (continued from their checkpoints)."""
        for handle in sorted(self.open):
            with contextlib.suppress(Exception):
                self.runs[handle].close(Outcome.KILLED, KILLED_REASON)


def _portable(exc: BaseException) -> BaseException:
    """`exc` as the run's process can unpickle it without importing mlflow: netsweep's own and Python's
    exceptions as they are, others as a RuntimeError naming them."""
    module = type(exc).__module__
    if module == "builtins" or module.startswith("src."):
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(exc))
            return exc
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def serve(fd: int) -> None:
    """The writer process's main: requests from the connection on file descriptor `fd`."""
    for ending in (signal.SIGINT, signal.SIGTERM):  # the run handles them (a scancel's SIGTERM reaches both):
        signal.signal(ending, signal.SIG_IGN)  # this process ends when the run's end of the pipe closes
    connection = Connection(fd)
    inbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
    asked = threading.Event()

    def read() -> None:
        while True:
            try:
                request = connection.recv()
            except (EOFError, OSError):
                if not asked.is_set():
                    os._exit(0)  # nothing was asked of this process: it has nothing to write
                inbox.put(None)
                return
            asked.set()
            inbox.put(request)

    threading.Thread(target=read, name="netsweep-writer-inbox", daemon=True).start()
    server = Server(connection)
    importlib.import_module("src.tracking.opening").preload().join()  # mlflow, and what it starts once
    try:
        server.serve(inbox)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the interpreter's teardown: everything is written (MLflow's writes are synchronous)
