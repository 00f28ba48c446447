"""Any exception that ends a command -> an exit code and one line that names the value and what to do."""

import re
import sys

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from src.config.checks import unknown_key_message
from src.errors import (
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    ConfigError,
    DataError,
    RunDiverged,
    SweepBusy,
    SweepIncomplete,
)

UNKNOWN_KEY = re.compile(r"Could not (?:override|append to config)[^']*'([^']+)'")
MERGING = re.compile(r"Error merging override (\S+?)=(.*)")
HYDRA_ADVICE = ("To append to your config use", "full_key:", "object_type=", "reference_type=")


def one_line(text: str) -> str:
    """Text on one line, without Hydra's advice to add keys with `+` and OmegaConf's internal details."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith(HYDRA_ADVICE))


def _composition_message(exc: HydraException) -> str:
    text = str(exc)
    unknown = UNKNOWN_KEY.search(text)
    if unknown:
        return unknown_key_message(unknown.group(1))
    merging = MERGING.search(text)
    if merging and isinstance(exc.__cause__, OmegaConfBaseException):
        key, value = merging.groups()
        cause = one_line(exc.__cause__)
        if "not in" in cause or "Key '" in cause:
            return unknown_key_message(key)
        return f"{key}={value} is invalid: {cause}"
    if isinstance(exc.__cause__, OmegaConfBaseException):
        return f"{one_line(exc.__cause__)} ({one_line(exc)})"
    return one_line(exc)


def exit_code_and_message(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for whatever ended the command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; runs in progress were recorded as KILLED"
    if isinstance(exc, RunDiverged):
        return EXIT_DIVERGED, str(exc)
    if isinstance(exc, (ConfigError, DataError, SweepBusy)):
        return EXIT_USER_ERROR, str(exc)
    if isinstance(exc, SweepIncomplete):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", "") or "a required value"
        return EXIT_USER_ERROR, f"{key} is required: set it on the command line, e.g. {key}=..."
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        options = ", ".join(sorted(exc.options))
        return EXIT_USER_ERROR, f"{one_line(exc).split(';')[0]}; available options: {options}"
    if isinstance(exc, HydraException):  # composition errors (ConfigCompositionException) among them
        return EXIT_USER_ERROR, _composition_message(exc)
    if isinstance(exc, OmegaConfBaseException):
        return EXIT_USER_ERROR, one_line(exc)
    return EXIT_FAILED, f"{type(exc).__name__}: {one_line(exc)}"


def exit_with_message(exc: BaseException) -> None:
    """Print the one-line message for `exc` on stderr and exit with its code."""
    code, message = exit_code_and_message(exc)
    print(f"netsweep: {message}", file=sys.stderr)
    sys.exit(code)
