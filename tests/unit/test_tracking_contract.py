"""The tracking seam is one contract: the MLflow implementation and the test fakes have every member of the
Protocols of src/tracking/api.py, each method with the Protocol's parameters (names, kinds, defaults), and
the MLflow side offers nothing the Protocols leave out. A fake that drifts from the interface fails here,
not in a test that happens to call the drifted method."""

import inspect
import subprocess
import sys

import pytest

from src.tracking import api
from src.tracking.mlflow_models import LoadedNet
from src.tracking.mlflow_store import MlflowRunLog, MlflowStore

from ..fakes import FakeNet, FakeRunLog, FakeStore
from ..helpers import REPO

SEAMS = {  # Protocol: (the MLflow implementation, the fake, a fake instance for its attributes)
    api.Store: (MlflowStore, FakeStore, lambda: FakeStore()),
    api.RunLog: (MlflowRunLog, FakeRunLog, lambda: FakeStore().create_run("1", "r", {})),
    api.SavedNet: (LoadedNet, FakeNet, lambda: FakeNet({}, {})),
}


def _methods(cls: type) -> dict:
    return {name: value for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def _attributes(protocol: type) -> set[str]:
    return set(vars(protocol).get("__annotations__", {}))


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def drift(protocol: type, cls: type) -> list[str]:
    """How `cls` differs from `protocol`: members missing, methods whose parameters differ."""
    problems = []
    for name, method in _methods(protocol).items():
        own = getattr(cls, name, None)
        if own is None or not callable(own):
            problems.append(f"{cls.__name__}.{name} is missing")
        elif _parameters(own) != _parameters(method):
            problems.append(f"{cls.__name__}.{name}{inspect.signature(own)} is not {name}{inspect.signature(method)}")
    return problems


@pytest.mark.parametrize("protocol", SEAMS, ids=lambda p: p.__name__)
def test_the_mlflow_implementation_has_exactly_the_protocols_methods(protocol):
    real = SEAMS[protocol][0]
    assert drift(protocol, real) == []
    assert set(_methods(real)) == set(_methods(protocol))  # nothing callers could reach around the seam
    assert _attributes(protocol) <= set(vars(real).get("__annotations__", {}))


@pytest.mark.parametrize("protocol", SEAMS, ids=lambda p: p.__name__)
def test_the_fake_has_every_member_of_the_protocol(protocol):
    _, fake, instance = SEAMS[protocol]
    assert drift(protocol, fake) == []
    made = instance()
    assert all(hasattr(made, name) for name in _attributes(protocol)), _attributes(protocol)


def test_drift_is_told():
    class Drifted:  # a fake that renamed a parameter, dropped a default and lacks a method
        def set_tags(self, labels): ...

        def log_metrics(self, metrics, step, tags=None): ...

    problems = drift(api.RunLog, Drifted)
    assert any(p.startswith("Drifted.set_tags(self, labels)") for p in problems)
    assert any(p.startswith("Drifted.log_metrics(self, metrics, step, tags=None)") for p in problems)
    assert "Drifted.close is missing" in problems and len(problems) == len(_methods(api.RunLog))


def test_the_protocols_module_imports_nothing_heavy():
    code = "import sys, src.tracking.api; print(sorted({'mlflow', 'numpy', 'pandas'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
