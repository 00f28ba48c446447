"""A single run's store opened in a writer process (src/tracking/remote.py, src/tracking/writer.py): the same
records as a store opened in the run's own process, writes that never wait, a failed write raised at the
next wait, a killed run's process leaving its run killed, a lost writer said."""

import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from src.outcomes import Outcome
from src.tracking import api, names, remote
from src.tracking.api import DatasetRecord, StepMetrics
from src.tracking.opening import open_store

from ..helpers import REPO, wait_for
from .test_tracking_contract import drift


@pytest.fixture
def writer():
    started = remote.launch()
    assert started is not None
    yield started
    started.process.kill()
    started.process.wait()


def test_the_remote_side_has_every_method_of_the_protocols():
    assert drift(api.Store, remote.RemoteStore) == []
    assert drift(api.RunLog, remote.RemoteRunLog) == []


def test_a_run_written_through_the_writer_reads_back_whole(writer, store_uri, tmp_path):
    store = remote.RemoteStore(writer, store_uri)
    run = store.create_run_in("remote", "a note", "r1", {"config_hash": "abc", "n": 3})
    run.log_params({"optimizer.lr": 0.1})
    run.log_steps([StepMetrics(1, {"val_loss": 0.5}, 1000), StepMetrics(2, {"val_loss": 0.25}, 2000)])
    run.log_metrics({"test_acc": 0.9}, step=2, tags={"stage": "end"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "figure1.png").write_bytes(b"not really a png")
    run.log_file(scratch / "figure1.png")
    (scratch / "figure1.png").unlink()  # gone before the writer gets to it: its content went with the request
    run.log_text("a: 1\n", names.CONFIG)
    run.log_arrays({"W1": np.ones((2, 3), dtype=np.float32)}, names.WEIGHTS)
    layout = {"dtype": "float64", "image_shape": [8, 8], "pixel_max": 16}
    run.log_training_data(DatasetRecord("digits", "d1", "sklearn", layout, 10, 10))
    run.close(Outcome.FINISHED)

    local = open_store(store_uri)  # what a reader of the store sees, once close has returned
    record = local.run(run.run_id)
    assert record.outcome == Outcome.FINISHED and record.name == "r1"
    assert record.params == {"optimizer.lr": "0.1"}
    assert record.tags["config_hash"] == "abc" and record.tags["n"] == "3" and record.tags["stage"] == "end"
    assert local.history(run.run_id, ["val_loss"]) == {"val_loss": [0.5, 0.25]}
    assert record.metrics["test_acc"] == 0.9
    assert {names.CONFIG, "figure1.png"} <= set(local.artifacts(run.run_id))
    assert store.experiment_id("remote") == record.experiment_id
    assert [r.run_id for r in store.runs([record.experiment_id], config_hash="abc")] == [run.run_id]


def test_a_failed_write_is_raised_at_the_next_wait_and_the_writer_goes_on(writer, store_uri):
    store = remote.RemoteStore(writer, store_uri)
    run = store.create_run_in("remote", "", "r1", {})
    run.log_params({"lr": 0.1})
    run.log_params({"lr": 0.2})  # MLflow refuses a param logged again with another value: not raised here
    with pytest.raises(RuntimeError, match="MlflowException"):
        run.close(Outcome.FINISHED)
    run.close(Outcome.ERROR, "it failed")  # the writer carried on
    assert open_store(store_uri).run(run.run_id).outcome == Outcome.ERROR


def test_a_store_that_cannot_be_opened_fails_every_wait_with_its_own_error(writer, tmp_path):
    store = remote.RemoteStore(writer, "http://127.0.0.1:9")  # nothing listens on port 9
    run = store.create_run_in("remote", "", "r1", {})
    run.log_params({"lr": 0.1})
    for _ in range(2):
        with pytest.raises(Exception, match="127.0.0.1:9") as raised:
            run.close(Outcome.ERROR)
        assert "Traceback" not in str(raised.value)
    with pytest.raises(Exception, match="127.0.0.1:9"):  # its id, never created: raised, not waited for forever
        _ = run.run_id


def test_a_run_whose_id_is_read_after_an_earlier_failure_gets_it(writer, store_uri):
    """A failure raised by one call leaves the others' answers to them: the other run's id (asked before the
    failure, read after it) is at hand; the run whose write failed is not closed as finished."""
    store = remote.RemoteStore(writer, store_uri)
    first = store.create_run_in("remote", "", "r1", {})
    first.log_params({"lr": 0.1})
    first.log_params({"lr": 0.2})  # refused by MLflow
    second = store.create_run_in("remote", "", "r2", {})
    with pytest.raises(RuntimeError, match="MlflowException"):
        first.close(Outcome.FINISHED)
    second.close(Outcome.FINISHED)
    local = open_store(store_uri)
    assert local.phase(second.run_id) == Outcome.FINISHED and local.phase(first.run_id) == Outcome.RUNNING


_KILLED_MIDWAY = """
import os, signal, sys
from src.tracking import remote
writer = remote.launch()
store = remote.RemoteStore(writer, sys.argv[1])
run = store.create_run_in("remote", "", "r1", {{}})
print(run.run_id, flush=True)
run.log_metrics({{"val_loss": 0.5}}, step=1)
{ending}
"""


@pytest.mark.parametrize("ending", ["os.kill(os.getpid(), signal.SIGKILL)", "remote.Writer.finish(writer)"])
def test_a_run_its_process_left_open_is_closed_killed(store_uri, ending):
    """Killed (SIGKILL) or not, a run its process never closed ends killed once the pipe closes, its writes kept."""
    code = _KILLED_MIDWAY.format(ending=ending)
    done = subprocess.run([sys.executable, "-c", code, store_uri], cwd=REPO, capture_output=True, text=True)
    run_id = done.stdout.split()[0]
    if "SIGKILL" not in ending:
        assert done.returncode == 0, done.stderr
    local = open_store(store_uri)
    if "SIGKILL" in ending:
        wait_for(lambda: local.phase(run_id) == Outcome.KILLED, timeout=60)
        assert "its process ended" in local.run(run_id).tags[names.FAILURE_REASON]
    else:  # finished cleanly without closing its run: left as it stood
        assert local.phase(run_id) == Outcome.RUNNING
    assert local.history(run_id, ["val_loss"]) == {"val_loss": [0.5]}


def test_a_writer_asked_nothing_exits_when_its_pipe_closes_even_while_importing(tmp_path):
    writer = remote.launch()
    assert writer is not None
    writer.finish()  # nothing was sent: the pipe just closes
    assert writer.process.wait(timeout=30) == 0


def test_a_lost_writer_is_said_at_the_next_wait(writer, store_uri):
    store = remote.RemoteStore(writer, store_uri)
    run = store.create_run_in("remote", "", "r1", {})
    assert run.run_id
    writer.process.send_signal(signal.SIGKILL)
    writer.process.wait()
    with pytest.raises(remote.WriterLost, match=r"ended \(exit code -9\)"):
        run.log_params({"lr": 0.1})
        run.close(Outcome.FINISHED)


def test_a_single_runs_command_never_imports_mlflow(tmp_path):
    """`python -m src.run` leaves mlflow to its writer process: its own imports are what it trains with."""
    probe = textwrap.dedent(
        """
        import runpy, sys, atexit
        atexit.register(lambda: print("MLFLOW-IMPORTED" if "mlflow" in sys.modules else "NO-MLFLOW", flush=True))
        sys.argv = ["src.run", "epochs=2", "tracking.evaluate=false", "tracking.uri=sqlite:///" + sys.argv[1]]
        runpy.run_module("src.run", run_name="__main__")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "mlflow.db")], cwd=tmp_path, capture_output=True, text=True,
        env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NO-MLFLOW" in done.stdout, done.stdout[-2000:]
    local = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = local.runs([local.experiment_id("netsweep")])
    assert run.outcome == Outcome.FINISHED and run.metrics["epochs_trained"] == 2


class _Sent:
    """The writer's end of the pipe, in this process: what it answers."""

    def __init__(self):
        self.answers = []

    def send(self, message):
        self.answers.append(message)


def test_the_writer_carries_out_requests_in_order_and_closes_what_was_left_open(store_uri):
    """The writer's side in this process (`Server`): answers only what was asked and every failure; at the end
    of its pipe the runs it opened and nobody closed end killed, a rescheduled one is left waiting."""
    from src.tracking.writer import Server

    pipe = _Sent()
    inbox = queue.SimpleQueue()
    requests = [
        (1, False, None, "open", (store_uri,), {}),
        (2, True, None, "create_run_in", ("remote", "", "left open", {}), {"_handle": 1}),
        (3, True, None, "create_run_in", ("remote", "", "rescheduled", {}), {"_handle": 2}),
        (4, False, 1, "log_params", ({"lr": "0.1"},), {}),
        (5, False, 1, "log_params", ({"lr": "0.2"},), {}),  # refused by MLflow: answered as a failure
        (6, False, 2, "reschedule", (), {}),
        (7, True, None, "experiment_id", ("remote",), {}),
        None,  # the pipe closed without `finish`
    ]
    for request in requests:
        inbox.put(request)
    Server(pipe).serve(inbox)

    answers = {number: (ok, value) for number, ok, value in pipe.answers}
    assert sorted(answers) == [2, 3, 5, 7]
    assert answers[2][0] and answers[3][0] and answers[7][0] and not answers[5][0]
    assert isinstance(answers[5][1], RuntimeError) and "MlflowException" in str(answers[5][1])
    local = open_store(store_uri)
    assert local.phase(answers[2][1]) == Outcome.KILLED
    assert local.phase(answers[3][1]) == Outcome.SCHEDULED
    assert local.run(answers[2][1]).params == {"lr": "0.1"}


class _Gone:
    def send(self, message):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_writer_whose_run_process_is_gone_still_writes_and_closes_what_it_was_sent(store_uri):
    from src.tracking.writer import Server

    inbox = queue.SimpleQueue()
    for request in [
        (1, False, None, "open", (store_uri,), {}),
        (2, True, None, "create_run_in", ("remote", "", "orphan", {}), {"_handle": 1}),  # its answer: nobody
        (3, False, 1, "log_params", ({"lr": "0.1"},), {}),
        None,
    ]:
        inbox.put(request)
    Server(_Gone()).serve(inbox)
    local = open_store(store_uri)
    (run,) = local.runs([local.experiment_id("remote")])
    assert run.outcome == Outcome.KILLED and run.params == {"lr": "0.1"}


class _Pickling(_Sent):
    def send(self, message):
        pickle.dumps(message)  # as a Connection does first
        super().send(message)


def test_an_answer_that_cannot_be_sent_is_answered_as_a_failure():
    from src.tracking.writer import Server

    server = Server(_Pickling())
    server.store = types.SimpleNamespace(handout=lambda: lambda: None)  # a value no pipe carries
    inbox = queue.SimpleQueue()
    inbox.put((1, True, None, "handout", (), {}))
    inbox.put(None)
    server.serve(inbox)
    ((number, ok, value),) = server.connection.answers
    assert number == 1 and not ok and "could not be sent" in str(value)


def test_a_store_the_writer_cannot_open_fails_every_request_after_it(tmp_path):
    from src.tracking.writer import Server

    pipe = _Sent()
    inbox = queue.SimpleQueue()
    for request in [
        (1, False, None, "open", ("sqlite:///" + str(tmp_path / "missing" / "mlflow.db"),), {}),
        (2, True, None, "experiment_id", ("remote",), {}),
        (3, True, None, "finish", (), {}),
    ]:
        inbox.put(request)
    Server(pipe).serve(inbox)
    (_, ok1, first), (_, ok2, second), (_, ok3, _) = pipe.answers
    assert not ok1 and not ok2 and ok3
    assert type(first).__name__ == "ConfigError" and second is first
