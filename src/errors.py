"""Exceptions netsweep raises and the exit codes they end a command with; imports nothing of netsweep's (nor
Hydra: the overrides' errors, which are Hydra's too, are in src/config/override_errors.py)."""

EXIT_FAILED = 1  # a sweep config ended with an error or was killed, or netsweep itself failed
EXIT_USER_ERROR = 2  # a bad value, option or file the user can fix
EXIT_DIVERGED = 3  # a single run diverged (in a sweep a diverged config is a result)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


class NetsweepError(Exception):
    """Base of the errors below."""


class ConfigError(NetsweepError, ValueError):
    """A config value the user set is unusable; the message names the key and what to do."""


class DataError(NetsweepError, ValueError):
    """A data file is missing, unreadable or holds something a classifier cannot train on."""


class RunDiverged(NetsweepError):
    """Raised after a diverged run was recorded, so the process can exit non-zero with one line."""


class RunPaused(NetsweepError):
    """Raised after a sweep's run paused at a pruning rung (its checkpoint written, its run SCHEDULED again):
    the sweep decides the rung, then continues it or closes it as pruned."""


class WorkerLost(NetsweepError, RuntimeError):
    """A sweep job found its run already started: the engine is retrying it after losing a worker."""


class SweepIncomplete(NetsweepError, RuntimeError):
    """Some configs of a sweep ended with an error or were killed; the message lists them."""


class WriterLost(NetsweepError, RuntimeError):
    """The process writing a single run to its tracking store (src/tracking/writer.py) ended before it answered."""


class SweepBusy(NetsweepError, RuntimeError):
    """The same sweep is running in another live process; the message names it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised where it is safe to stop; `signum` names the signal when one raised it."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


class SweepInterrupted(Interrupted):
    """Ctrl-C or SIGTERM ended a sweep, whose runs are closed; the message says what the interrupt left."""


def first_line(exc: BaseException) -> str:
    """An error as a command that reports it in one line says it: its first line, or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
