"""Where a run's and a sweep's time and memory go, phase by phase, beside two baselines run in the same bench:
a process that only imports what netsweep must import (numpy, mlflow) and a plain script that fits
scikit-learn's MLPClassifier on the same digits for the same epochs.

    python bench/phases.py            # the rows below, each timing the median of 3 (what bench.py includes)
    python bench/phases.py --quick    # tiny sizes, one of each: checks that every row still measures

Rows: the default run (digits, 30 epochs) into an existing store and into a new one, split into phases; the
16-config `decay_lr` digits sweep, the parent's phases on its own clock and the workers' summed; the peak
resident memory of a Fashion-MNIST run and the private memory (smaps, the shared data aside) of a sweep worker.

How: every Python process a measured command starts (the command itself and its sweep workers) imports this
module first, through a `sitecustomize.py` put on its PYTHONPATH, which wraps the functions named in PHASES
as their modules are imported and appends one JSON line per call to $NETSWEEP_PHASES_FILE. A second spent
in a phase nested inside another counts for the inner one only, so the phases of a process add up to its
wall time. netsweep itself knows nothing of this. Only the standard library is imported at the top: this
runs in every such process before anything else does.
"""

from __future__ import annotations

import atexit
import functools
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORDS_ENV = "NETSWEEP_PHASES_FILE"
SHARE_MARK = "netsweep-data-"  # the folder a sweep's decoded data is memory-mapped from (src/data/shared.py)
MB = 2**20

# module -> {function or Class.method: phase}. Innermost wins: `run_config`'s own phase is what it does
# besides the phases it calls (settings, tags, waiting for the mlflow import started in the background).
PHASES: dict[str, dict[str, str]] = {
    "hydra.main": {"_run_hydra": "Hydra: compose, output folder, logging"},
    "src.experiment.runner": {
        "run_config": "run: netsweep's own steps",
        "load_data": "data: read, check, split",
        "_open_run": "run creation",
        "Fit.run": "training",
        "final_metrics": "test scoring",
        "evaluate_run": "evaluation",
    },
    "src.tracking.opening": {"open_store": "store open", "preload": "imports: mlflow, waited for"},
    "src.tracking.remote": {"Writer.wait": "waiting for the writer process"},  # a single run's (its store's)
    "src.tracking.mlflow_store": {
        "MlflowStore.__init__": "store open",
        "MlflowStore.experiment_id": "run creation",
        "MlflowRunLog.log_params": "run creation",
        "MlflowRunLog.log_training_data": "run creation",
        "MlflowRunLog.log_metrics": "epoch logging",
        "MlflowRunLog.log_steps": "epoch logging",
        "MlflowRunLog.log_model": "model",
        "MlflowRunLog.log_arrays": "model",
        "MlflowRunLog.close": "close",
        "MlflowStore.evaluate_model": "evaluation",
    },
    "src.tracking.sqlite_files": {"_install_fresh_store": "store creation", "migrate_new": "store creation"},
    "src.experiment.recording": {"record_history": "Figure 1"},
    "src.experiment.checkpoints": {"save": "checkpoints", "remove": "checkpoints"},
    "src.experiment.packs": {"_train": "training"},  # a pack's members' training, shared
    "src.experiment.job": {"prepare_worker": "worker warm-up"},
    "src.sweep.apps": {
        "NetsweepApp.plan": "sweep: plan and check",
        "NetsweepApp.start": "sweep: store, parent run",
        "NetsweepApp.prepare": "sweep: children, data share",
        "NetsweepApp.finish": "sweep: close, summary",
    },
    "src.sweep.dispatch": {"dispatch": "sweep: waiting for workers"},
    "src.sweep.pool": {"WorkerPool.open": "sweep: pool start", "WorkerPool.close": "sweep: pool stop"},
    "src.report.build": {"build_report": "report"},
}
EVALUATIONS = "src.tracking.mlflow_store.MlflowStore.evaluate_model"  # in the process that asked, or its own
START, IMPORTS, EXIT = "interpreter start", "imports", "exit (after the last phase)"
RUN_ORDER = (
    START,
    IMPORTS,
    "Hydra: compose, output folder, logging",
    "data: read, check, split",
    "imports: mlflow, waited for",
    "store creation",
    "store open",
    "run creation",
    "run: netsweep's own steps",
    "training",
    "waiting for the writer process",
    "epoch logging",
    "checkpoints",
    "test scoring",
    "Figure 1",
    "model",
    "close",
    "evaluation",
    EXIT,
)
SWEEP_ORDER = (
    START,
    IMPORTS,
    "Hydra: compose, output folder, logging",
    "sweep: pool start",
    "sweep: plan and check",
    "store creation",
    "store open",
    "sweep: store, parent run",
    "sweep: children, data share",
    "sweep: waiting for workers",
    "report",
    "evaluation",
    "sweep: close, summary",
    "sweep: pool stop",
    EXIT,
)


# --- in every measured process (through sitecustomize) ----------------------------------------------------


def memory_now(pid: int | str = "self") -> dict[str, float]:
    """MB of a process now: resident, peak resident (VmHWM), private (smaps: mapped by this process only)
    outside the sweep's shared data, and resident from the shared data's files."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    private = shared_data = 0
    in_share = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if not head.endswith(":"):  # a mapping's header: address range, perms, offset, device, inode, path
            in_share = SHARE_MARK in line
        elif head in ("Private_Clean:", "Private_Dirty:") and not in_share:
            private += int(rest.split()[0])
        elif head == "Rss:" and in_share:
            shared_data += int(rest.split()[0])
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "private_mb": private / 1024,
        "shared_data_mb": shared_data / 1024,
    }


def _peak_rss_mb() -> float:
    """VmHWM: the most resident memory this process has had so far."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class _Timeline:
    """The phases open in each thread; each second goes to the innermost one."""

    def __init__(self, path: str):
        self.path, self.local, self.lock = path, threading.local(), threading.Lock()

    def _stack(self) -> list[list[Any]]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def enter(self, phase: str, what: str) -> None:
        now, stack = time.time(), self._stack()
        if stack:
            stack[-1][3] += now - stack[-1][2]
        stack.append([phase, what, now, 0.0, now])  # phase, function, resumed at, own seconds so far, started at

    def leave(self) -> None:
        now, stack = time.time(), self._stack()
        phase, what, resumed, own, started = stack.pop()
        record = {"phase": phase, "what": what, "own": own + now - resumed, "start": started, "end": now}
        self.write({**record, "peak_rss_mb": _peak_rss_mb()})
        if phase in ("run: netsweep's own steps", "close"):  # a run ended (here, or in its writer): memory held
            self.write({"event": "memory", **memory_now()})
        if stack:
            stack[-1][2] = time.time()  # the records' own cost counts for no phase

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"pid": os.getpid(), "thread": threading.get_ident(), **record}) + "\n"
        with self.lock, open(self.path, "a") as handle:  # one write per line: processes append side by side
            handle.write(line)


def _timed(timeline: _Timeline, function: Any, phase: str, what: str) -> Any:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        timeline.enter(phase, what)
        try:
            result = function(*args, **kwargs)
        finally:
            timeline.leave()
        if isinstance(result, threading.Thread):  # `preload`: what the caller waits for is its import
            result.join = _timed(timeline, result.join, phase, what + ".join")  # type: ignore[method-assign]
        return result

    return timed


def _wrap(timeline: _Timeline, module: Any, table: dict[str, str]) -> None:
    for dotted, phase in table.items():
        owner_name, _, name = dotted.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        if name not in vars(owner):
            timeline.write({"event": "missing", "what": f"{module.__name__}.{dotted}"})
            continue
        setattr(owner, name, _timed(timeline, vars(owner)[name], phase, f"{module.__name__}.{dotted}"))


class _Finder:
    """Finds the modules of PHASES as Python would, and wraps their functions once each has run."""

    def __init__(self, timeline: _Timeline):
        self.timeline = timeline

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PHASES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _wrap(self.timeline, module, PHASES[name])

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _born() -> float:
    """When this process started, in time.time() terms (to 10 ms)."""
    ticks = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def install() -> None:
    """What sitecustomize calls in every measured process."""
    path = os.environ.get(RECORDS_ENV)
    if not path:
        return
    timeline = _Timeline(path)
    timeline.write({"event": "start", "t": time.time(), "born": _born(), "parent": os.getppid()})
    atexit.register(lambda: timeline.write({"event": "exit", "t": time.time(), "peak_rss_mb": _peak_rss_mb()}))
    sys.meta_path.insert(0, _Finder(timeline))


# --- the bench's side -------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One command: its wall time, its peak resident memory, and what its processes recorded."""

    wall_s: float
    peak_rss_mb: float
    started: float
    ended: float
    pid: int
    output: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def own(self, pid: int | None = None) -> dict[str, float]:
        """Seconds per phase of one process (the command's by default), interpreter start, imports and exit
        included, so that they add up to its wall time."""
        pid = self.pid if pid is None else pid
        mine = [r for r in self.records if r["pid"] == pid]
        start = next(r for r in mine if r.get("event") == "start")
        calls = [r for r in mine if "phase" in r and r["thread"] == start["thread"]]
        seconds: dict[str, float] = defaultdict(float)
        born = self.started if pid == self.pid else start["born"]
        seconds[START] = start["t"] - born
        seconds[IMPORTS] = (min(r["start"] for r in calls) if calls else self.ended) - start["t"]
        for call in calls:
            seconds[call["phase"]] += call["own"]
        if pid == self.pid:
            seconds[EXIT] = self.ended - max((r["end"] for r in calls), default=start["t"])
        return dict(seconds)

    def workers(self) -> list[int]:
        """The other processes that ran a phase (a sweep's workers; not loky's resource tracker)."""
        return sorted({r["pid"] for r in self.records if "phase" in r and r["pid"] != self.pid})

    def writers(self) -> list[int]:
        """A single run's writer process (src/tracking/remote.py): the other process that evaluated nothing."""
        evaluating = {r["pid"] for r in self.records if r.get("phase") == "evaluation"}
        return [pid for pid in self.workers() if pid not in evaluating]

    def count(self, what: str) -> int:
        """Calls of the function `what` (module.function) in every process."""
        return sum(1 for r in self.records if r.get("what") == what)

    def after_prompt(self) -> float:
        """Seconds the command's other processes (a run's evaluation) went on after it ended."""
        ends = [r.get("end", r.get("t", 0.0)) for r in self.records if r["pid"] != self.pid]
        return max(0.0, max(ends, default=self.ended) - self.ended)

    def peak_rss_of(self, pids: list[int]) -> float:
        """The highest peak RSS the processes `pids` recorded (an evaluation's own process, a worker)."""
        return max((r.get("peak_rss_mb", 0.0) for r in self.records if r["pid"] in pids), default=0.0)

    def seconds_in(self, phase: str, pids: list[int]) -> float:
        return sum(r["own"] for r in self.records if r.get("phase") == phase and r["pid"] in pids)

    def memory(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == "memory"]

    def missing(self) -> list[str]:
        return sorted({r["what"] for r in self.records if r.get("event") == "missing"})


class Commands:
    """Runs commands in scratch folders, netsweep's with the phase timer on."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.hooks = scratch / "hooks"
        self.hooks.mkdir(parents=True, exist_ok=True)
        (self.hooks / "sitecustomize.py").write_text("import bench.phases\n\nbench.phases.install()\n")
        self.cache = scratch / "cache"  # pristine stores (src/tracking/sqlite_files.py), made by the first run
        self.template = scratch / "template.db"

    def folder(self, with_store: bool = True) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        if with_store:
            shutil.copy(self.template, folder / "mlflow.db")
        return folder

    def env(self, folder: Path, timed: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", RECORDS_ENV)}
        env.update(
            MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
            NETSWEEP_CACHE_DIR=str(self.cache),
            PYTHONPATH=os.pathsep.join([str(self.hooks), str(REPO)] if timed else [str(REPO)]),
        )
        if timed:
            env[RECORDS_ENV] = str(folder / "phases.jsonl")
        return env

    def run(self, command: list[str], folder: Path, timed: bool = True) -> Measured:
        """Wall time and peak RSS of `command`: its own VmHWM where it recorded one, else the kernel's account."""
        output = folder / "output.txt"
        with open(output, "w") as handle:
            started = time.time()
            process = subprocess.Popen(
                command, cwd=folder, env=self.env(folder, timed), stdout=handle, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(process.pid, 0)
            ended = time.time()
        process.returncode = os.waitstatus_to_exitcode(status)
        printed = output.read_text()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {printed[-1500:]}")
        records = _settled(folder / "phases.jsonl", process.pid) if timed else []
        # Its own VmHWM where it recorded one: wait4's ru_maxrss counts this process's memory at the fork too
        # (Linux keeps it across exec), so a bench holding Fashion-MNIST would read every child as 500 MB.
        own = [r["peak_rss_mb"] for r in records if r["pid"] == process.pid and "peak_rss_mb" in r]
        peak = max(own) if own else usage.ru_maxrss / 1024
        return Measured(ended - started, peak, started, ended, process.pid, printed, records)

    def netsweep(self, args: list[str], with_store: bool = True) -> Measured:
        folder = self.folder(with_store)
        measured = self.run([sys.executable, "-m", "src.run", *args], folder)
        if measured.missing():
            raise RuntimeError(f"bench/phases.py times functions netsweep no longer has: {measured.missing()}")
        return measured


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _settled(path: Path, pid: int) -> list[dict[str, Any]]:
    """The records once every process the command started has ended: a run's evaluation goes on after the
    prompt, and may not even have recorded its start when the command ends (waited for, so that it neither
    slows the next command nor is lost)."""
    seen: set[int] = set()
    while True:
        records = _records(path)
        _outlived(records, pid)
        time.sleep(0.5)  # after the command's wall time: a process it started has recorded its start by now
        records = _records(path)
        started = {r["pid"] for r in records if r.get("event") == "start"}
        if started == seen:
            return records
        seen = started


def _outlived(records: list[dict[str, Any]], pid: int, wait_s: float = 300.0) -> bool:
    """Wait until the processes the command started (and recorded) have ended; whether any outlived it."""
    others = {r["pid"] for r in records if r.get("event") == "start" and r["pid"] != pid}
    deadline, outlived = time.time() + wait_s, False
    while time.time() < deadline:
        alive = [other for other in others if Path(f"/proc/{other}").exists()]
        if not alive:
            break
        outlived = True
        time.sleep(0.1)
    return outlived


IMPORTS_ONLY = """
import json, time
import numpy, mlflow
from bench.phases import memory_now
print(json.dumps(memory_now()))
"""

SKLEARN_SCRIPT = """
import sys, warnings
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

epochs = int(sys.argv[1])
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.2, random_state=0)
model = MLPClassifier(
    hidden_layer_sizes=(256,), solver="sgd", batch_size=32, learning_rate_init=0.1, momentum=0.0,
    alpha=2 * 1e-4 * 32, max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(X_train, y_train)
print(f"test accuracy {model.score(X_test, y_test):.4f} after {model.n_iter_} epochs")
"""


def row(what: str, value: float, ratio: float | None = None, against: str = "", unit: str = "s") -> dict[str, Any]:
    return {"what": what, "value": value, "unit": unit, "ratio": ratio, "against": against}


def _median_of(repeats: int, measure: Any) -> list[Measured]:
    return [measure() for _ in range(repeats)]


def _median(measured: list[Measured], key: Any = lambda m: m.wall_s) -> Measured:
    """The measurement of median wall time (its phases with it)."""
    ordered = sorted(measured, key=key)
    return ordered[(len(ordered) - 1) // 2]


def phase_rows(label: str, seconds: dict[str, float], order: tuple[str, ...], wall: float) -> list[dict[str, Any]]:
    """One row per phase (in `order`, then any other), each with its share of the wall time."""
    names = [name for name in order if name in seconds] + sorted(set(seconds) - set(order))
    rows = [row(f"{label}: {name}", seconds[name], seconds[name] / wall, "x its wall time") for name in names]
    rest = wall - sum(seconds.values())
    rows.append(row(f"{label}: not in any phase", rest, rest / wall, "x its wall time"))
    return rows


def worker_rows(sweep: Measured, label: str) -> list[dict[str, Any]]:
    """The sweep's workers' phases, summed over workers (worker-seconds)."""
    total: dict[str, float] = defaultdict(float)
    for pid in sweep.workers():
        for name, seconds in sweep.own(pid).items():
            total[name] += seconds
    busy = sum(total.values())
    names = [name for name in RUN_ORDER if name in total] + sorted(set(total) - set(RUN_ORDER))
    return [
        row(f"{label}: {name} (worker-seconds)", total[name], total[name] / busy, "x the workers' time")
        for name in names
    ]


def baselines(commands: Commands, epochs: int, repeats: int) -> tuple[Measured, Measured, dict[str, float]]:
    """The imports-only process (its memory too) and the scikit-learn script, the median of `repeats`."""
    imports = _median_of(
        repeats, lambda: commands.run([sys.executable, "-c", IMPORTS_ONLY], commands.folder(False), False)
    )
    script = _median_of(
        repeats,
        lambda: commands.run([sys.executable, "-c", SKLEARN_SCRIPT, str(epochs)], commands.folder(False), False),
    )
    chosen = _median(imports)
    memory = json.loads(chosen.output.strip().splitlines()[-1])  # its own VmHWM among them (see Commands.run)
    return chosen, _median(script), memory


def single_run_rows(commands: Commands, imports: Measured, script: Measured, repeats: int) -> tuple[list, Measured]:
    existing = _median(_median_of(repeats, lambda: commands.netsweep([])))
    fresh = _median(_median_of(repeats, lambda: commands.netsweep([], with_store=False)))
    base, against = imports.wall_s, "x imports-only"
    rows = [
        row("baseline: a process importing numpy and mlflow", base),
        row(
            "baseline: scikit-learn MLPClassifier script (digits, 30 epochs)",
            script.wall_s,
            script.wall_s / base,
            against,
        ),
        row("default run (digits, 30 epochs), existing store", existing.wall_s, existing.wall_s / base, against),
        row("default run, new store", fresh.wall_s, fresh.wall_s / existing.wall_s, "x into an existing store"),
        row("default run: evaluation, in the run's process", existing.own().get("evaluation", 0.0)),
        row("default run: evaluation, in a process of its own", existing.seconds_in("evaluation", existing.workers())),
        row("default run: that process, done after the prompt", existing.after_prompt()),
    ]
    rows += phase_rows("default run", existing.own(), RUN_ORDER, existing.wall_s)
    for pid in existing.writers():  # beside the run, on the other core: mlflow, the store, the run's records
        writer = existing.own(pid)
        rows += phase_rows("default run, its writer process", writer, RUN_ORDER, sum(writer.values()))[:-1]
    rows.append(row("new store: store creation", fresh.seconds_in("store creation", [fresh.pid, *fresh.writers()])))
    return rows, existing


def sweep_rows(commands: Commands, epochs: int, default_run: Measured) -> tuple[list, Measured]:
    args = ["-m", "+sweep=decay_lr", "hydra.launcher.progress_interval_s=0"]
    if epochs != 30:
        args.append(f"epochs={epochs}")
    sweep = commands.netsweep(args)
    label = "16-config decay_lr sweep" + ("" if epochs == 30 else f", {epochs} epochs")
    rows = [
        row(label, sweep.wall_s, sweep.wall_s / default_run.wall_s, "x the default run"),
        row(f"{label}: models evaluated", sweep.count(EVALUATIONS), unit="runs"),
    ]
    rows += phase_rows(f"{label}, parent", sweep.own(), SWEEP_ORDER, sweep.wall_s)
    rows += worker_rows(sweep, f"{label}, workers")
    return rows, sweep


def data_mb(name: str) -> float:
    """MB the images a run of `name` trains, validates and tests on take as float32 (the issue's measure; a
    run holds them as stored, uint8 for IDX files, and scales a batch at a time)."""
    from src.config.schema import DataName, DigitsConfig, IdxConfig
    from src.data.loader import load_dataset

    if name == "digits":
        config: Any = DigitsConfig(name=DataName.digits, val_fraction=0.15, test_fraction=0.2)
    else:
        config = IdxConfig(
            name=DataName.fashion_mnist, root="/usr/share/datasets/fashion-mnist", val_fraction=0.15,
            download=False, cache_dir="~/.cache/netsweep",
        )  # fmt: skip
    ds = load_dataset(config, seed=0)
    return ds.float_nbytes / MB


def memory_rows(commands: Commands, imports: dict[str, float], quick: bool) -> list[dict[str, Any]]:
    """Peak RSS of one run, and the private memory of a sweep's workers, on Fashion-MNIST (digits: --quick)."""
    fashion = not quick and Path("/usr/share/datasets/fashion-mnist").is_dir()
    data_args = ["data=fashion_mnist"] if fashion else []
    name = "Fashion-MNIST" if fashion else "digits"
    data = data_mb("fashion_mnist" if fashion else "digits")
    run = commands.netsweep([*data_args, "epochs=2"])
    writers = run.writers()  # its store's writer process, beside it (src/tracking/remote.py)
    evaluator = run.peak_rss_of([pid for pid in run.workers() if pid not in writers])  # after the prompt
    writer = run.peak_rss_of(writers)
    # what the writer adds to the run's own process: the pages no other process maps (libpython, numpy and
    # OpenBLAS, which both map, are counted once, in the run's RSS)
    writer_private = max((m["private_mb"] for m in run.memory() if m["pid"] in writers), default=writer)
    allowed = imports["peak_rss_mb"] + 1.3 * data
    sweep = commands.netsweep(
        ["-m", *data_args, "epochs=2", "optimizer.lr=0.05,0.1", "hydra.launcher.n_jobs=2",
         "hydra.launcher.progress_interval_s=0"]
    )  # fmt: skip
    workers = [m for m in sweep.memory() if m["pid"] != sweep.pid]
    private = max(m["private_mb"] for m in workers)
    shared = max(m["shared_data_mb"] for m in workers)
    return [
        row(f"memory: {name} float32 data (train, validation, test)", data, unit="MB"),
        row("memory: imports-only process, peak RSS", imports["peak_rss_mb"], unit="MB"),
        row("memory: imports-only process, private", imports["private_mb"], unit="MB"),
        row(
            f"memory: {name} run, peak RSS plus its writer's private memory",
            run.peak_rss_mb + writer_private,
            (run.peak_rss_mb + writer_private) / allowed,
            "x imports + 1.3x data",
            "MB",
        ),
        row(f"memory: {name} run: its own process, peak RSS", run.peak_rss_mb, unit="MB"),
        row(f"memory: {name} run: its writer process, peak RSS", writer, unit="MB"),
        row(f"memory: {name} run: its writer process, private", writer_private, unit="MB"),
        row(f"memory: {name} run: both processes' peak RSS, summed", run.peak_rss_mb + writer, unit="MB"),
        row(f"memory: {name} run's evaluation (its own process, after the prompt), peak RSS", evaluator, unit="MB"),
        row(
            f"memory: {name} sweep worker, private (shared data aside)",
            private,
            private / (imports["private_mb"] + 100),
            "x imports + 100 MB",
            unit="MB",
        ),
        row(f"memory: {name} sweep worker, shared data resident", shared, unit="MB"),
    ]


def all_rows(quick: bool) -> list[dict[str, Any]]:
    """Every row of this section, measured in scratch folders that are removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="netsweep-phases-"))
    commands = Commands(scratch)
    try:
        first = commands.folder(with_store=False)  # a store to copy for every run "into an existing store"
        commands.run([sys.executable, "-m", "src.run", "epochs=1", "tracking.evaluate=false"], first, timed=False)
        shutil.copy(first / "mlflow.db", commands.template)
        repeats, epochs = (1, 2) if quick else (3, 30)
        imports, script, memory = baselines(commands, 30, repeats)
        rows, default_run = single_run_rows(commands, imports, script, repeats)
        sweep, _ = sweep_rows(commands, epochs, default_run)
        return rows + sweep + memory_rows(commands, memory, quick)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def print_rows(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["what"]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'value':>11}  ratio")
    for item in rows:
        ratio = "" if item["ratio"] is None else f"{item['ratio']:.2f}{item['against']}"
        print(f"{item['what']:<{width}}  {item['value']:>9.3f} {item['unit']:<2}  {ratio}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one of each (CI)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    rows = all_rows(args.quick)
    print_rows(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
