"""bench/bench.py's sections that time CLI runs, which CI leaves out for time (.ci/run): with the CLI replaced
by a recorder, every command they would run composes as `python -m src.run` composes it (netsweep's own
checks included, so a renamed setting or a bad value fails here), and their rows come out whole. How fast
anything is stays the benchmark's business."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from bench import bench as bench_module
from src.config.checks import validate
from src.sweep.settings import LauncherSettings

ROW_KEYS = {"what", "value", "unit", "ratio", "against"}


def first_config(overrides: list[str]) -> list[str]:
    """The overrides of a command's first config: each swept key at its first value."""
    first = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            first.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
        else:
            first.append(override.input_line)
    return first


class RecordingBench(bench_module.Bench):
    """A Bench whose CLI composes each command's first config instead of running it, and whose store holds
    `count` finished runs."""

    def __init__(self, loader, folder: Path, data_args: list):
        self.loader, self.scratch, self.data_args = loader, folder, data_args
        self.commands: list[list[str]] = []
        self.count = 1

    def folder(self) -> Path:
        return self.scratch

    def cli(self, args: list, folder: Path) -> tuple[float, str]:
        self.commands.append(list(args))
        multirun = args[:1] == ["-m"]
        overrides = first_config(list(args[1:] if multirun else args))
        config = self.loader.load_configuration("config", overrides, RunMode.MULTIRUN if multirun else RunMode.RUN)
        validate(config)  # netsweep's checks of every value, as a run makes them
        if multirun:  # and of every launcher setting, as the sweep makes them
            launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
            LauncherSettings(**{key: value for key, value in launcher.items() if key != "_target_"})
        return 1.0 + len(self.commands) / 10, "printed"

    def runs(self, folder: Path) -> list:
        metrics = {"epochs_trained": 3, "best_val_acc": 0.9}
        return [SimpleNamespace(run_id=f"run{i}", tags={}, metrics=metrics) for i in range(self.count)]


class FakeStore:
    def history(self, run_id: str, names: list[str]) -> dict:
        return {name: [0.2, 0.1, 0.1] for name in names}


@pytest.fixture
def recording(loader, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_module, "open_store", lambda uri: FakeStore())
    return lambda data_args=(): RecordingBench(loader, tmp_path, list(data_args))


def _rows(rows: list[dict], count: int) -> dict:
    assert len(rows) == count and all(set(row) == ROW_KEYS and row["value"] > 0 for row in rows)
    return {row["what"]: row for row in rows}


@pytest.mark.parametrize("data_args", [[], ["data=fashion_mnist"]])
def test_the_sweep_pruning_and_busy_core_sections_run_commands_that_compose(recording, data_args):
    bench = recording(data_args)
    sweeps = _rows(bench_module.sweep_rows(bench, epochs=2), 4)
    assert sweeps["4-config sweep, 2 epochs each, n_jobs=2"]["against"] == "x speed-up over n_jobs=1"
    pruning = _rows(bench_module.pruning_rows(bench, epochs=3), 6)
    assert pruning["16-config decay_lr grid, 3 epochs, prune=asha: epochs trained"]["ratio"] == 1.0
    busy = _rows(bench_module.busy_core_rows(bench), 6)
    assert all(row["ratio"] == 1.0 for row in busy.values() if "busy" in row["what"])
    assert len(bench.commands) == 3 + 2 + 6
    assert all(all(arg in command for arg in data_args) for command in bench.commands)


def test_the_resume_section_resumes_the_grid_it_trained(recording):
    bench = recording()
    bench.count = 32  # the grid's 32 runs, none of them a link to a reused result
    rows = _rows(bench_module.resume_rows(bench), 2)
    assert rows["resume a finished 32-config grid (digits)"]["against"] == "x one 1-epoch run"
    grid, again, single = bench.commands
    assert grid == again and "+sweep=decay_lr" in grid and single == ["epochs=1"]
