"""The BLAS thread governor: fixed settings, small nets, and the per-epoch probe that picks the faster."""

from threadpoolctl import threadpool_info

from src.experiment import threads
from src.experiment.threads import PROBE_STEPS, ThreadGovernor

BIG, STEPS = 10_000_000, 1000


def _blas_limit() -> int:
    return min(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def _epoch(governor, epoch, seconds_per_step):
    """Run one epoch's steps while a fake clock advances seconds_per_step[threads] per step; returns the
    number of steps each setting ran."""
    ran = {1: 0, 2: 0}
    for step in range(1, STEPS + 1):
        governor(epoch, step)
        _epoch.clock += seconds_per_step[governor.current]
        ran[governor.current] += 1
    return ran


def test_fixed_and_small_settings_use_one_setting_and_give_the_process_its_limits_back():
    before = _blas_limit()
    fixed = ThreadGovernor(4, 1, BIG, STEPS)
    fixed(1, 1)
    assert fixed.current == 1 and _blas_limit() == 1 and fixed.policy == "fixed at 1"
    fixed.close()
    assert _blas_limit() == before and fixed.used == 1
    small = ThreadGovernor(4, None, 1000, STEPS)  # too little work per step for a second thread
    assert small.policy == "fixed at 1" and small.used == 1
    assert ThreadGovernor(4, None, BIG, 3 * PROBE_STEPS).policy == "fixed at 1"  # too few steps to probe
    assert ThreadGovernor(1, None, BIG, STEPS).policy == "fixed at 1"


def test_each_epoch_probes_both_settings_and_trains_on_with_the_faster(monkeypatch):
    _epoch.clock = 0.0
    monkeypatch.setattr(threads.time, "perf_counter", lambda: _epoch.clock)
    governor = ThreadGovernor(2, None, BIG, STEPS)
    assert governor.policy == "measured each epoch: 1 or 2"
    ran = _epoch(governor, 1, {1: 0.010, 2: 0.006})  # quiet machine: two threads are faster
    assert ran == {1: PROBE_STEPS, 2: STEPS - PROBE_STEPS}  # one thread first, then all of them
    assert governor.choices == [2]
    ran = _epoch(governor, 2, {1: 0.010, 2: 0.030})  # a busy core: two threads lose time slices
    assert ran[2] == PROBE_STEPS // 3 + 1  # abandoned once slower than the whole one-thread stretch
    _epoch(governor, 3, {1: 0.010, 2: 0.030})
    assert governor.choices == [2, 1, 1] and governor.used == 1 and governor.current == 1
    ran = _epoch(governor, 4, {1: 0.010, 2: 0.0099})  # a tie goes to the full stretch, then to the faster
    assert ran == {1: PROBE_STEPS, 2: STEPS - PROBE_STEPS} and governor.choices[-1] == 2
    governor.close()


def test_a_sweep_worker_probes_the_threads_lent_to_it_each_epoch(monkeypatch, tmp_path):
    _epoch.clock = 0.0
    monkeypatch.setattr(threads.time, "perf_counter", lambda: _epoch.clock)
    lent = tmp_path / "lent"
    monkeypatch.setenv(threads.LENT_VARIABLE, str(lent))
    lent.write_text("1")  # both workers busy on two cores: one thread each
    governor = ThreadGovernor(1, None, BIG, STEPS, lent=threads.lent_threads())
    assert governor.policy == "measured each epoch: 1 or 1, more while other workers of the sweep are idle"
    quiet = {1: 0.010, 2: 0.006}
    assert _epoch(governor, 1, quiet) == {1: STEPS, 2: 0} and governor.choices == [1]  # nothing to probe
    lent.write_text("2")  # the other worker went idle: its core is lent
    assert _epoch(governor, 2, quiet) == {1: PROBE_STEPS, 2: STEPS - PROBE_STEPS} and governor.choices == [1, 2]
    lent.write_text("2")
    _epoch(governor, 3, {1: 0.010, 2: 0.030})  # lent, but the core is busy after all: back to one
    lent.unlink()  # the sweep ended meanwhile: the worker's own share
    assert _epoch(governor, 4, quiet) == {1: STEPS, 2: 0}
    assert governor.choices == [1, 2, 1, 1] and governor.used == 1
    governor.close()
    monkeypatch.delenv(threads.LENT_VARIABLE)
    assert threads.lent_threads() is None  # outside a local sweep's worker: nothing is lent
