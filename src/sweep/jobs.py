"""What runs in a worker: one job, as Hydra's own launchers run it (`run_job`: its output directory, its
saved .hydra/ configs, Hydra's singletons and callbacks), with the worker's BLAS threads limited; and what
its result means to the sweep (`classify`)."""

import contextlib
import functools
import io
import pickle
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from src import interrupts
from src.errors import RunDiverged, RunPaused, WorkerLost
from src.experiment.packs import PackEntry, run_pack
from src.outcomes import Outcome
from src.sweep.pack_logs import job_log_files, member_logs
from src.sweep.plan import Ending
from src.sweep.slots import WorkerDied


def execute_job(
    config: DictConfig, hydra_context, task_function, singleton_state: dict, threads: int | None, context=None
) -> JobReturn:
    """Run one job in a worker. The parent composed its config, so a worker on another machine needs the
    code installed but not the config files. `threads` limits BLAS/OpenMP threads (None: leave them as the
    worker was started, as Dask's nanny sets them); `context`, when given, is entered around the job."""
    interrupts.install()  # in a local worker process; Dask runs tasks on threads, where it does nothing
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    with threadpool_limits(limits=threads), context if context is not None else contextlib.nullcontext():
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    return _sendable(ret)


def execute_pack(
    configs: list[DictConfig], hydra_context, task_function, singleton_state: dict, threads: int | None, contexts=()
) -> list[JobReturn]:
    """Run a pack of netsweep's jobs in a worker: each job gets what Hydra's `run_job` gives it (its output
    directory, its saved .hydra/ configs, Hydra's callbacks), then they train as one pack
    (src/experiment/packs.py), each recorded in its own run; one JobReturn per job, in order, as
    `execute_job` returns it. `contexts` are the jobs' SweepJobs. `task_function` (netsweep's own, the only
    one packs are made for) is what each job would have run alone; the pack runs its work instead."""
    interrupts.install()
    setup_globals()
    Singleton.set_state(singleton_state)
    returns, logs = [], []
    for config, context in zip(configs, contexts, strict=True):
        HydraConfig.instance().set_config(config)
        returns.append(
            run_job(
                hydra_context=hydra_context,
                task_function=functools.partial(_pack_entry, context),
                config=config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        )
        logs.append(job_log_files())  # where this job logs: its own file, as run_job just set it up
    completed = [i for i, ret in enumerate(returns) if ret.status == JobStatus.COMPLETED]
    entries = [returns[i].return_value for i in completed]
    with threadpool_limits(limits=threads), member_logs([logs[i] for i in completed]):
        trained = run_pack(entries)
    interrupt = next((r for r in trained if isinstance(r, KeyboardInterrupt)), None)
    if interrupt is not None:  # each member is closed (killed, its checkpoint kept): the interrupt goes on, as
        raise interrupt  # it does from a job alone (Ctrl-C ends the sweep, a SIGTERM hands the pack back)
    results = iter(trained)
    for ret in returns:
        if ret.status == JobStatus.COMPLETED:
            entry, result = ret.return_value, next(results)
            if isinstance(result, BaseException):
                ret.status, ret.return_value = JobStatus.FAILED, result
            else:
                ret.return_value = result.objective(entry.cfg.objective)
    return [_sendable(ret) for ret in returns]


def _pack_entry(sweep_job, cfg: DictConfig) -> PackEntry:
    """What a job of a pack does in Hydra's `run_job`: say what its config is, to be trained with the pack."""
    hydra_config = HydraConfig.get()
    return PackEntry(cfg, list(hydra_config.overrides.task), Path(hydra_config.runtime.output_dir), sweep_job)


def failure(ret: JobReturn) -> BaseException | None:
    """The exception a failed job raised (None when it completed), read through JobReturn's public API."""
    if ret.status != JobStatus.FAILED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the getter also prints "Error executing job ..."
            ret.return_value  # noqa: B018 - the getter re-raises what the task raised
    except BaseException as exc:  # noqa: B036 - JobReturn re-raises whatever the task raised
        return exc
    return None


def classify(result: JobReturn | WorkerDied) -> Ending:
    """How a job ended, from what came back for it: its worker died, it raised (diverged, killed or an
    error, said in one line) or it finished with a value."""
    if isinstance(result, WorkerDied):
        return Ending(Outcome.KILLED, f"its worker process died ({result.reason})")
    exc = failure(result)
    if exc is None:
        return Ending(Outcome.FINISHED, value=result.return_value)
    if isinstance(exc, RunDiverged):
        return Ending(Outcome.DIVERGED, str(exc))
    if isinstance(exc, RunPaused):
        return Ending(Outcome.PAUSED, str(exc))
    if isinstance(exc, (WorkerLost, KeyboardInterrupt)):
        return Ending(Outcome.KILLED, str(exc))
    return Ending(Outcome.ERROR, f"{type(exc).__name__}: {exc}".splitlines()[0])


def _sendable(ret: JobReturn) -> JobReturn:
    """The job's return, with an exception that cannot travel back to the parent replaced by its text."""
    exc = failure(ret)
    if exc is not None:
        try:
            pickle.dumps(exc)
        except Exception:
            ret.return_value = RuntimeError(f"{type(exc).__name__}: {exc}")
            ret.status = JobStatus.FAILED
    return ret
