"""Any exception that ends a command -> an exit code and one line that names the value and what to do."""

import re
import sys
from typing import Any

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from src.config.checks import choices, invalid_value_message, unknown_key_message
from src.config.override_errors import BadOverride, KeyAlreadySet, OverrideError, UnknownKey
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
    SweepInterrupted,
    WriterLost,
    first_line,
)

INTERRUPTED = "interrupted; runs in progress were recorded as KILLED"


def one_line(error: BaseException) -> str:
    """An error no branch below foresaw, all of its lines joined on one. (Hydra's and OmegaConf's errors say
    what matters in their first line, `first_line`; their later lines are advice to add keys with `+` and
    where in the config the error happened.)"""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def located(error: OmegaConfBaseException, name: str) -> Any:
    """A field of an OmegaConf error (`full_key`, `value`, `object_type`): declared on every one, but set only
    once OmegaConf has located the error in a config (as it has for every error composing one raises)."""
    return getattr(error, name, None)


def siblings(error: OmegaConfBaseException) -> list[str]:
    """The keys of the config node an unknown key was looked up in (`parent_node`), for a suggestion."""
    node = located(error, "parent_node")
    return [str(key) for key in node] if isinstance(node, DictConfig) else []


def already_set_message(key: str, line: str) -> str:
    return f"{key} is already in the config: set it with {line.lstrip('+')} (a leading + adds a key it lacks)"


def bad_value_message(key: str, value: Any, reason: OmegaConfBaseException) -> str:
    """A value that does not fit its key: the values allowed, for a setting with a fixed set of them, else
    OmegaConf's reason ('Value 'abc' of type 'str' could not be converted to Integer')."""
    allowed = choices(located(reason, "object_type"), key.rsplit(".", 1)[-1])
    return invalid_value_message(key, value, f"use one of {', '.join(allowed)}" if allowed else first_line(reason))


def override_message(exc: OverrideError) -> str:
    """The one line for an override netsweep applied, from the error's fields."""
    if isinstance(exc, UnknownKey):
        return unknown_key_message(exc.key)
    if isinstance(exc, KeyAlreadySet):
        return already_set_message(exc.key, exc.line)
    if isinstance(exc, BadOverride) and isinstance(exc.reason, OmegaConfBaseException):
        return bad_value_message(exc.key, exc.value, exc.reason)
    return first_line(exc)


def hydra_key_already_set(exc: ConfigCompositionException) -> tuple[str, str] | None:
    """(key, the override without its +) of Hydra's "Could not append to config. An item is already at
    'key'" error. The one place netsweep reads Hydra's text: Hydra raises it without a cause or any field
    that names the key (hydra/_internal/config_loader_impl.py, `_apply_overrides_to_config`)."""
    found = re.search(r"An item is already at '([^']+)'\.\s*Either remove \+ prefix: '([^']*)'", str(exc))
    return (found.group(1), found.group(2)) if found else None


def composition_message(exc: HydraException) -> str:
    """Hydra's own composition errors (a single run's config is composed by Hydra), by the OmegaConf error
    that caused them: a key the config lacks, or a value that does not fit its key."""
    cause = exc.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and located(cause, "full_key"):
        return unknown_key_message(located(cause, "full_key"), siblings(cause))  # "Could not override 'key'"
    if isinstance(cause, OmegaConfBaseException) and located(cause, "full_key"):
        return bad_value_message(located(cause, "full_key"), located(cause, "value"), cause)  # "Error merging ..."
    already = hydra_key_already_set(exc) if isinstance(exc, ConfigCompositionException) else None
    if already:
        return already_set_message(*already)
    if isinstance(cause, OmegaConfBaseException):
        return f"{first_line(cause)} ({first_line(exc)})"
    return first_line(exc)


def exit_code_and_message(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for whatever ended the command."""
    if isinstance(exc, KeyboardInterrupt):  # a sweep's says what it left; another's, where it stopped
        return EXIT_INTERRUPTED, str(exc) if isinstance(exc, SweepInterrupted) else INTERRUPTED
    if isinstance(exc, RunDiverged):
        return EXIT_DIVERGED, str(exc)
    if isinstance(exc, (ConfigError, DataError, SweepBusy)):
        return EXIT_USER_ERROR, str(exc)
    if isinstance(exc, (SweepIncomplete, WriterLost)):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, OverrideError):
        return EXIT_USER_ERROR, override_message(exc)
    if isinstance(exc, MissingMandatoryValue):
        key = located(exc, "full_key") or "a required value"
        return EXIT_USER_ERROR, f"{key} is required: set it on the command line, e.g. {key}=..."
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        options = ", ".join(sorted(exc.options))
        return EXIT_USER_ERROR, f"{first_line(exc)}; available options: {options}"
    if isinstance(exc, HydraException):  # composition errors (ConfigCompositionException) among them
        return EXIT_USER_ERROR, composition_message(exc)
    if isinstance(exc, OmegaConfBaseException):
        return EXIT_USER_ERROR, first_line(exc)
    return EXIT_FAILED, f"{type(exc).__name__}: {one_line(exc)}"


def exit_with_message(exc: BaseException) -> None:
    """Print the one-line message for `exc` on stderr and exit with its code."""
    code, message = exit_code_and_message(exc)
    print(f"netsweep: {message}", file=sys.stderr)
    sys.exit(code)
