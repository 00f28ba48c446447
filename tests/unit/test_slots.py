"""The one module that relies on joblib's undocumented backend API: if an upgraded joblib changes it,
these fail loudly (pyproject.toml pins the versions they passed on)."""

import inspect
import os
import signal
from pathlib import Path

import joblib
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import BatchedCalls, ParallelBackendBase

from src.sweep.slots import ProcessSlotsBackend, WorkerDied


def square_or_die(x: int) -> tuple:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # this worker process dies mid-call
    return x * x, os.environ.get("OPENBLAS_NUM_THREADS")


def test_the_backend_api_we_rely_on_is_still_there():
    assert "callback" in inspect.signature(ParallelBackendBase.submit).parameters
    assert hasattr(ParallelBackendBase, "supports_retrieve_callback")
    assert hasattr(ParallelBackendBase, "retrieve_result_callback")
    batch = BatchedCalls([(abs, (-1,), {})], ("loky", 1))
    assert batch.items == [(abs, (-1,), {})] and batch() == [1]  # a batch's calls, as `_done` reads them
    major, minor = (int(part) for part in joblib.__version__.split(".")[:2])
    assert (1, 4) <= (major, minor) < (1, 7), joblib.__version__


def test_a_dying_worker_costs_only_its_call_and_its_slot_comes_back():
    backend = ProcessSlotsBackend(threads=1)
    with parallel_config(backend=backend, n_jobs=2):
        results = list(Parallel(return_as="generator_unordered")(delayed(square_or_die)(x) for x in range(6)))
        again = list(Parallel(return_as="generator_unordered")(delayed(square_or_die)(x) for x in (4, 5)))
    died = [r for r in results if isinstance(r, WorkerDied)]
    assert len(died) == 1 and died[0].args == (3,)
    assert sorted(r for r in results if not isinstance(r, WorkerDied)) == [(x * x, "1") for x in (0, 1, 2, 4, 5)]
    assert sorted(again) == [(16, "1"), (25, "1")]
    backend.stop()
    assert backend._slots == []


def lent_while_running(hold_s: float) -> tuple:
    """What a worker reads of the threads lent to it, as its call starts and after `hold_s` seconds."""
    import time

    from src.experiment.threads import lent_threads

    read = lent_threads()
    first = read()
    time.sleep(hold_s)
    return hold_s, first, read()


def test_the_cores_of_idle_slots_are_lent_to_the_busy_ones(monkeypatch):
    monkeypatch.setattr("src.sweep.slots.cpu_count", lambda: 8)  # as on an 8-core machine, 4 slots
    backend = ProcessSlotsBackend(threads=2)
    with parallel_config(backend=backend, n_jobs=4):
        calls = [delayed(lent_while_running)(hold) for hold in (6.0, 0.3, 0.3, 0.3)]
        results = list(Parallel(return_as="generator_unordered")(calls))
        path = backend._lent
        assert Path(path).read_text() == "8"  # every slot idle: a call that starts alone may use all 8
    backend.stop()
    # The four are handed out together (8 cores over 4 calls: 2 each); once the short ones have ended, the
    # long one reads the 8 cores of all four slots.
    assert [first for _, first, _ in results] == [2, 2, 2, 2]
    assert [then for hold, _, then in results if hold == 6.0] == [8]
    assert not os.path.exists(path)  # the pool's file goes with it
    assert ProcessSlotsBackend()._lent is None  # no thread limit (n_jobs over the cores): nothing to lend
