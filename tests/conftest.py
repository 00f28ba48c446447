"""Shared fixtures: small synthetic data and a helper to run the CLI in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def run_cli(args, cwd, env_extra=None, timeout=600, **kwargs):
    """`python -m src.run ARGS` in `cwd` with its own tracking store unless env_extra says otherwise."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(cwd) / 'mlflow.db'}"
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "src.run", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in a fresh folder with a fresh SQLite store; returns (run, tracking_uri)."""

    def run(*args, **kwargs):
        return run_cli(list(args), tmp_path, **kwargs)

    run.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run.cwd = tmp_path
    return run
