"""A single run's tracking store, opened in a process of its own (src/tracking/writer.py), so that the run
never imports mlflow: `python -m src.run` starts that process first thing (`start`), and while it imports
mlflow and opens the store on the second core, this one composes the config, loads the data and trains.

`RemoteStore` and `RemoteRunLog` are the seam's Protocols (src/tracking/api.py) spoken over a pipe, in order.
A call that returns something (a search, an experiment's id) waits for its answer. A write does not: it is
sent and the writer carries it out in turn, so an epoch's metrics, Figure 1 or the model never wait for the
store, and a run created before the store is open gets its id once the writer has created it
(`RemoteRunLog.run_id` waits for it then). Closing a run waits until the writer has written everything before
it, so a run that `close` returned from is whole in the store. A write that failed is raised by the next call
that waits (the run's close at the latest), as the store's own error.

A Ctrl-C lands after a wait, never in the middle of one (a reply is never lost). If this process dies, the
writer closes the runs it left open as killed (their checkpoints continue them); if the writer dies, the next
wait says so."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from src.errors import WriterLost
from src.tracking import names

if TYPE_CHECKING:
    import numpy as np

    from src.outcomes import Outcome
    from src.tracking.api import DatasetRecord, Registration, RunRecord, SavedNet, StepMetrics, Tags

log = logging.getLogger("netsweep")
CODE_ROOT = str(Path(__file__).resolve().parents[2])  # where `src` is imported from, installed or not
_SERVE = "import sys; from src.tracking.writer import serve; serve(int(sys.argv[1]))"
NOT_A_RUN = ("-m", "--multirun", "-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
             "--shell-completion", "-p", "--package", "--version")  # fmt: skip


class Writer:
    """The writer process and this end of its pipe: requests numbered in the order they are sent, answers
    kept until asked for."""

    def __init__(self, process: subprocess.Popen, connection: Connection):
        self.process, self._connection = process, connection
        self._sent = 0
        self._answers: dict[int, tuple[bool, Any]] = {}  # request number -> (ok, its value or exception)
        self._awaited: set[int] = set()  # requests whose answer someone will wait for
        self._kept: dict[int, BaseException] = {}  # failures of awaited requests, raised already by another wait
        self._handles = 0
        self.lost: WriterLost | None = None  # the writer ended: every later call raises this

    def post(self, target: int | None, method: str, args: tuple, kwargs: dict, answer: bool = False) -> int:
        """Ask the writer to call `method` on the store (`target` None) or on the run it holds as `target`;
        returns the request's number, to `wait` on when `answer` (a failure is answered in any case). First
        raises an earlier request's failure that has come back meanwhile (a store that could not be opened
        stops the run at its next write, not at its end; a run whose write failed is not closed as if it had
        not), except for `finish`, sent in any case and its wait raising what failed before it."""
        if self.lost is not None:
            raise self.lost
        with _shielded():  # an answer is received whole or not at all
            while self._connection.poll():
                self._receive()
        if method != "finish":
            self._raise_failed(self._sent)
        self._sent += 1
        try:
            with _shielded():  # a request is sent whole or not at all
                self._connection.send((self._sent, answer, target, method, args, kwargs))
        except OSError:  # the writer is gone (a broken pipe)
            raise self._lost() from None
        if answer:
            self._awaited.add(self._sent)
        return self._sent

    def handle(self) -> int:
        """A number for a run the writer is to hold (what later requests on the run name)."""
        self._handles += 1
        return self._handles

    def wait(self, number: int) -> Any:
        """The answer to request `number`, once every request before it was carried out; raises the first
        failure among them (a write that failed) or its own."""
        with _shielded():
            while number not in self._answers and number not in self._kept:
                self._receive()
        self._awaited.discard(number)
        if number in self._kept:  # its failure was raised by an earlier wait: raised again for its own
            raise self._kept.pop(number)
        self._raise_failed(number)
        return self._answers.pop(number)[1]

    def _raise_failed(self, last: int) -> None:
        """Raise the first failure among the answers to requests up to `last`, saying the others; a failed
        request that is still to be waited for keeps its failure for that wait (a run's id read later)."""
        failed = sorted(n for n, (ok, _) in self._answers.items() if not ok and n <= last)
        if not failed:
            return
        raised = []
        for n in failed:
            raised.append(self._answers.pop(n)[1])
            if n in self._awaited:
                self._kept[n] = raised[-1]
        first, *others = raised
        for other in {str(other) for other in others} - {str(first)}:
            log.warning(f"netsweep: a tracking write also failed: {other}")
        raise first

    def ask(self, target: int | None, method: str, args: tuple, kwargs: dict) -> Any:
        return self.wait(self.post(target, method, args, kwargs, answer=True))

    def _receive(self) -> None:
        try:
            number, ok, value = self._connection.recv()
        except (EOFError, OSError):
            raise self._lost() from None
        self._answers[number] = (ok, value)

    def _lost(self) -> WriterLost:
        if self.lost is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)
            self.lost = WriterLost(
                f"the process writing this run to its tracking store ended (exit code {self.process.poll()}) "
                "before the run was recorded whole; the run's checkpoint is kept: the same command continues it"
            )
        return self.lost

    def finish(self) -> None:
        """Wait until every request was carried out, then let the writer go (it exits)."""
        try:
            if self._sent and self.lost is None:  # else nothing was asked (closing the pipe ends it at once,
                # even mid-import), or the writer is gone, which was said
                self.ask(None, "finish", (), {})
        finally:
            self._connection.close()


def _shielded() -> contextlib.AbstractContextManager:
    """src.interrupts' shield, imported when first used: it imports Hydra, and `start` runs before that."""
    from src import interrupts  # deferred: it imports Hydra's errors, and `start` runs before Hydra is imported

    return interrupts.shielded()


_WRITER: Writer | None = None


def start(argv: Sequence[str]) -> None:
    """Start the writer process, when `argv` (this command's arguments) asks for a single run."""
    global _WRITER
    if _WRITER is None and not any(arg in NOT_A_RUN or arg.startswith("hydra.mode=") for arg in argv):
        _WRITER = launch()


def launch() -> Writer | None:
    """A new writer process (None when none can be started: the run then opens its store itself)."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [CODE_ROOT, os.environ.get("PYTHONPATH")]))},
            start_new_session=True,  # a Ctrl-C at the terminal is this process's to handle: writes go on
        )
    except OSError as exc:  # the run opens its store itself, as a sweep's worker does
        log.debug(f"no writer process ({exc}): the store is opened in this process")
        ours.close()
        return None
    finally:
        theirs.close()
    return Writer(process, Connection(ours.detach()))


def started() -> bool:
    return _WRITER is not None


def open_store(uri: str) -> RemoteStore:
    """The store at `uri`, opened by the writer process (`started()` must be true)."""
    if _WRITER is None:
        raise RuntimeError("no writer process: call src.tracking.remote.start first")
    return RemoteStore(_WRITER, uri)


def stop() -> None:
    """Wait for the writer to have written everything asked of it, and let it exit (at the command's end). A
    write that failed is said here, never raised: the command is ending with its own outcome."""
    global _WRITER
    writer, _WRITER = _WRITER, None
    if writer is None:
        return
    try:
        writer.finish()
    except Exception as exc:
        print(f"netsweep: a tracking write failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:  # every run was closed before this: the writer ends on its own once it has written
        print("netsweep: interrupted while the last records were written; the writer finishes them", file=sys.stderr)


class RemoteRunLog:
    """One run, written by the writer process (see the module's docstring)."""

    def __init__(self, writer: Writer, handle: int, opened: int, run_id: str | None = None):
        self._writer, self._handle, self._opened, self._run_id = writer, handle, opened, run_id

    @property
    def run_id(self) -> str:
        """The run's id: at hand for a run that existed, else once the writer has created it."""
        if self._run_id is None:
            self._run_id = cast(str, self._writer.wait(self._opened))
        return self._run_id

    def _write(self, method: str, *args: Any) -> None:
        self._writer.post(self._handle, method, args, {})

    def set_tags(self, tags: Tags) -> None:
        self._write("set_tags", _plain(tags))

    def rename(self, name: str) -> None:
        self._write("rename", name)

    def log_params(self, params: Tags) -> None:
        self._write("log_params", _plain(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, tags: Tags | None = None) -> None:
        self._write("log_metrics", dict(metrics), step, None if tags is None else _plain(tags))

    def log_steps(self, steps: Sequence[StepMetrics], tags: Tags | None = None) -> None:
        self._write("log_steps", list(steps), None if tags is None else _plain(tags))

    def log_text(self, text: str, name: str) -> None:
        self._write("log_text", text, name)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        """The file's content goes with the request: it may be gone (a scratch folder) by the time it is written."""
        self._write("log_file", path.name, path.read_bytes(), folder)

    def log_arrays(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        self._write("log_arrays", {key: value.copy() for key, value in arrays.items()}, name)

    def log_model(self, params: Mapping[str, np.ndarray], layout: Mapping[str, Any], example: np.ndarray) -> None:
        self._write("log_model", {key: value.copy() for key, value in params.items()}, dict(layout), example)

    def log_training_data(self, data: DatasetRecord) -> None:
        self._write("log_training_data", data)

    def reopen(self) -> None:
        self._write("reopen")

    def reschedule(self) -> None:
        self._writer.ask(self._handle, "reschedule", (), {})

    def close(self, outcome: Outcome, reason: str | None = None) -> None:
        """End the run; returns once it is whole in the store (every write before this one carried out)."""
        self._writer.ask(self._handle, "close", (outcome, reason), {})


class RemoteStore:
    """A tracking store opened by the writer process (see the module's docstring)."""

    uri: str

    def __init__(self, writer: Writer, uri: str):
        self._writer, self.uri = writer, uri
        writer.post(None, "open", (uri,), {})

    def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._writer.ask(None, method, args, kwargs)

    def _run(self, method: str, *args: Any, run_id: str | None = None, **kwargs: Any) -> RemoteRunLog:
        handle = self._writer.handle()
        opened = self._writer.post(None, method, args, {**kwargs, "_handle": handle}, answer=run_id is None)
        return RemoteRunLog(self._writer, handle, opened, run_id)

    def experiment_id(self, name: str, description: str = "") -> str:
        return cast(str, self._ask("experiment_id", name, description))

    def prefer_wal(self) -> None:
        self._ask("prefer_wal")

    def set_experiment_tags(self, experiment_id: str, tags: Tags) -> None:
        self._ask("set_experiment_tags", experiment_id, _plain(tags))

    def create_run(
        self,
        experiment_id: str,
        name: str,
        tags: Tags,
        parent_run_id: str | None = None,
        scheduled: bool = False,
    ) -> RemoteRunLog:
        return self._run("create_run", experiment_id, name, _plain(tags), parent_run_id, scheduled)

    def create_run_in(self, experiment: str, description: str, name: str, tags: Tags) -> RemoteRunLog:
        """Neither waits: the run's id comes when it is first read."""
        return self._run("create_run_in", experiment, description, name, _plain(tags))

    def attach_run(self, run_id: str, tags: Tags) -> RemoteRunLog:
        return self._run("attach_run", run_id, _plain(tags), run_id=run_id)

    def run_log(self, run_id: str) -> RemoteRunLog:
        return self._run("run_log", run_id, run_id=run_id)

    def run(self, run_id: str) -> RunRecord:
        return cast("RunRecord", self._ask("run", run_id))

    def phase(self, run_id: str) -> Outcome:
        return cast("Outcome", self._ask("phase", run_id))

    def runs(
        self,
        experiment_ids: Iterable[str],
        *,
        sweep_id: str | None = None,
        sweeps_only: bool = False,
        config_hash: str | None = None,
        outcomes: Iterable[Outcome] = (),
    ) -> list[RunRecord]:
        return cast(
            "list[RunRecord]",
            self._ask(
                "runs", list(experiment_ids), sweep_id=sweep_id, sweeps_only=sweeps_only, config_hash=config_hash,
                outcomes=list(outcomes),
            ),
        )  # fmt: skip

    def results_by_config(self, experiment_id: str) -> dict[str, RunRecord]:
        return cast("dict[str, RunRecord]", self._ask("results_by_config", experiment_id))

    def find_sweep(self, sweep_id: str, experiment_id: str | None = None) -> RunRecord | None:
        return cast("RunRecord | None", self._ask("find_sweep", sweep_id, experiment_id))

    def sweeps(self) -> list[RunRecord]:
        return cast("list[RunRecord]", self._ask("sweeps"))

    def history(self, run_id: str, metrics: Iterable[str] = names.EPOCH_METRICS) -> dict[str, list[float]]:
        return cast("dict[str, list[float]]", self._ask("history", run_id, list(metrics)))

    def epochs_logged(self, run_id: str) -> int:
        return cast(int, self._ask("epochs_logged", run_id))

    def read_json(self, run_id: str, name: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._ask("read_json", run_id, name))

    def artifacts(self, run_id: str, folder: str = "") -> list[str]:
        return cast("list[str]", self._ask("artifacts", run_id, folder))

    def load_model(self, uri: str) -> SavedNet:
        """Loaded by this process (a saved net is read, not written): the one call that imports mlflow here."""
        implementation = importlib.import_module("src.tracking.mlflow_store")  # as opening.py's open_store
        return cast("SavedNet", implementation.connect(self.uri).load_model(uri))

    def register_model(self, name: str, run_id: str, alias: str, tags: Tags) -> Registration:
        return cast("Registration", self._ask("register_model", name, run_id, alias, _plain(tags)))

    def evaluate_model(
        self, run_id: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = ()
    ) -> dict[str, float]:
        return cast("dict[str, float]", self._ask("evaluate_model", run_id, images, labels, list(classes)))


def _plain(tags: Tags) -> dict[str, str]:
    """Tag and param values as the store writes them (their str()): what crosses the pipe is plain data."""
    return {key: str(value) for key, value in tags.items()}
