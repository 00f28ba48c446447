"""Hydra's own launcher and sweeper test suites, run against netsweep's plugins the way Hydra's launchers
run them against themselves (plugins/hydra_joblib_launcher/tests): any Hydra app can use them."""

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite
from hydra.version import VersionBase
from packaging.version import Version

from hydra_plugins.netsweep_launcher.netsweep_launcher import NetsweepLauncher
from hydra_plugins.netsweep_launcher.netsweep_sweeper import NetsweepSweeper

pytestmark = pytest.mark.slow
QUIET = ["hydra.launcher.progress_interval_s=0", "hydra.launcher.n_jobs=2"]


@pytest.fixture(autouse=True)
def hydras_version_base():
    """The suites assume the version base Hydra's own plugin tests run under (1.1: jobs change into their
    output folder). Importing src.run, as other test modules do, sets 1.3 for the whole process."""
    base = VersionBase.instance()
    before = base.getbase()
    base.setbase(Version("1.1"))
    yield
    base.version_base = before


def test_discovery():
    assert NetsweepLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]
    assert NetsweepSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize("launcher_name, overrides", [("netsweep", QUIET)])
class TestNetsweepLauncher(LauncherTestSuite):
    """Hydra's launcher suite, on an app that is not netsweep's (no MLflow grouping)."""


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("netsweep", [*QUIET, "hydra/sweeper=netsweep", "hydra.sweeper.max_batch_size=2"]),
    ],
)
class TestNetsweepSweeperBatches(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite, on netsweep's grid sweeper with batches of two."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": "netsweep"},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m", *QUIET],
        )
    ],
)
class TestNetsweepLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: real apps in subprocesses, job names, sweep dirs, original cwd."""
