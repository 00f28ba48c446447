"""The one module that relies on joblib's undocumented backend API: if an upgraded joblib changes it,
these fail loudly (pyproject.toml pins the versions they passed on)."""

import inspect
import os
import signal

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
