"""Turn any exception that ends the command into an exit code and one line for the console."""

import sys

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from src.config import ConfigError
from src.data import DataError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type=")))


def exit_code_and_message(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message); user errors name the value and what to do."""
    from src.experiment import RunDiverged
    from src.sweep import SweepIncomplete

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; the run was recorded as KILLED"
    if isinstance(exc, RunDiverged):
        return EXIT_DIVERGED, str(exc)
    if isinstance(exc, (ConfigError, DataError)):
        return EXIT_USER_ERROR, str(exc)
    if isinstance(exc, SweepIncomplete):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", "") or "a required value"
        return EXIT_USER_ERROR, f"{key} is required: set it on the command line, e.g. {key}=..."
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        options = ", ".join(sorted(o for o in exc.options if not o.endswith("_schema")))
        return EXIT_USER_ERROR, f"{_one_line(exc).split(';')[0]}; available options: {options}"
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return EXIT_USER_ERROR, f"{_one_line(cause)} ({_one_line(exc)})"
        return EXIT_USER_ERROR, _one_line(exc)
    return EXIT_FAILED, f"{type(exc).__name__}: {_one_line(exc)}"


def classify_job_failure(exc: BaseException) -> tuple[str, str]:
    """(outcome, reason) of a sweep job that raised: `diverged` is a result, anything else an `error`."""
    from src.experiment import RunDiverged, WorkerLost

    if isinstance(exc, RunDiverged):
        return "diverged", str(exc)
    if isinstance(exc, WorkerLost):
        return "killed", str(exc)
    return "error", exit_code_and_message(exc)[1]


def exit_with_message(exc: BaseException) -> None:
    """Print the one-line message for `exc` on stderr and exit with its code."""
    code, message = exit_code_and_message(exc)
    print(f"netsweep: {message}", file=sys.stderr)
    sys.exit(code)
