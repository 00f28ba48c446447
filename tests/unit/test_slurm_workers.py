"""A sweep's Dask worker (a Slurm job's) on SIGTERM: the training on its threads is asked to stop, the worker
takes no new task and closes once nothing runs on it; a call interrupted that way goes back to the scheduler
and runs again (tests/e2e/test_slurm.py shows it on a real cluster)."""

import asyncio
import os
import signal
from types import SimpleNamespace

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster, Reschedule  # noqa: E402
from distributed.core import Status  # noqa: E402

from src.errors import Interrupted  # noqa: E402
from src.sweep.slurm import ClusterCalls, StopOnSigterm, handed_back_on_stop  # noqa: E402


def test_sigterm_asks_the_training_to_stop_and_closes_the_worker_once_it_has(monkeypatch):
    asked, closed = [], []
    monkeypatch.setattr("src.interrupts.request_stop", asked.append)
    loop = asyncio.new_event_loop()
    state = SimpleNamespace(executing_count=1)  # a config is training

    async def close(reason):
        closed.append((reason, state.executing_count))

    worker = SimpleNamespace(loop=SimpleNamespace(asyncio_loop=loop), status=Status.running, state=state, close=close)
    previous = signal.getsignal(signal.SIGTERM)
    plugin = StopOnSigterm(grace_s=30)
    plugin.setup(worker)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        loop.run_until_complete(asyncio.sleep(0.3))
        assert asked == ["SIGTERM"] and worker.status == Status.closing_gracefully  # no new task from now on
        assert closed == []  # not while the config is still stopping
        assert signal.getsignal(signal.SIGTERM) == previous  # a second SIGTERM: Dask's own handling, at once
        state.executing_count = 0
        loop.run_until_complete(asyncio.sleep(0.3))
        assert closed == [("signal-15", 0)]
    finally:
        plugin.teardown(worker)
        signal.signal(signal.SIGTERM, previous)
        loop.close()


def _flaky(calls):
    calls.append(1)
    if len(calls) == 1:
        raise Interrupted("SIGTERM: the worker's process is ending")
    return len(calls)


def test_a_call_interrupted_by_its_workers_end_goes_back_to_the_scheduler(monkeypatch):
    with pytest.raises(Interrupted):  # a Ctrl-C of its own passes through
        handed_back_on_stop(_flaky, [])
    monkeypatch.setattr("src.interrupts.stop_requested", lambda: True)
    with pytest.raises(Reschedule):
        handed_back_on_stop(_flaky, [])
    calls: list = []
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster, set_as_default=False) as client:
        # 2: its second run, on the worker's copy of `calls` (joblib's Dask backend would have returned the
        # Reschedule to the caller as the call's value)
        assert sorted(ClusterCalls(client).start([(_flaky, (calls,)), (pow, (2, 5))])) == [2, 32]


@pytest.mark.parametrize("status", [Status.closing, Status.running])
def test_a_worker_closing_for_another_reason_stops_the_training_too(monkeypatch, status):
    # The sweep's end closes the scheduler, which closes the worker (Dask then waits for its threads) a moment
    # before the job's SIGTERM: the training must stop at a step then, not be cut by Slurm's SIGKILL. Taken off
    # a running worker (a Dask cluster that outlives the sweep), the plugin leaves its training alone.
    asked: list = []
    monkeypatch.setattr("src.interrupts.request_stop", asked.append)
    monkeypatch.setattr("src.interrupts.stop_requested", lambda: False)  # whatever this process asked before
    loop = asyncio.new_event_loop()
    worker = SimpleNamespace(loop=SimpleNamespace(asyncio_loop=loop), status=Status.running)
    previous = signal.getsignal(signal.SIGTERM)
    plugin = StopOnSigterm(grace_s=30)
    plugin.setup(worker)
    try:
        worker.status = status
        plugin.teardown(worker)
        if status == Status.closing:
            assert asked == ["the Dask worker is closing"]
            assert signal.getsignal(signal.SIGTERM) == plugin._on_sigterm  # a SIGTERM meanwhile cannot cut a step
        else:
            assert asked == [] and signal.getsignal(signal.SIGTERM) == previous
    finally:
        signal.signal(signal.SIGTERM, previous)
        loop.close()
