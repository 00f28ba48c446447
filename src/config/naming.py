"""How numbers, values and configs are written for people: run names, leaderboards, manifests and the
commands that reproduce a config all go through `format_value`, so 1e-4 is written one way everywhere."""

from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

NAMED_KEYS = {"optimizer.lr": "lr", "model.decay": "decay", "model.hidden_size": "h"}  # always in a run name
SHORT_KEYS = {"optimizer.batch_size": "bs"}
UNNAMED_PREFIXES = ("hydra.", "tracking.", "sweep", "schema")  # overrides that do not change what is trained
NAME_DIGITS = 4  # significant digits of numbers in names and figures


def format_number(value: float, digits: int | None = None) -> str:
    """The shortest text that reads back as the same number, in one style: 0.1 -> '0.1', 1.0 -> '1',
    0.001 -> '1e-3', 3.3e-05 -> '3.3e-5', 10000.0 -> '1e4', 0 -> '0'. With `digits`, rounded to that many
    significant digits first (names and figures; records and commands stay exact)."""
    if digits is not None and isinstance(value, float):
        value = float(f"{value:.{digits}g}")
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return str(int(value))  # an int key must read back as an int: 16384, not 1.6384e4
    exact = Decimal(repr(value) if isinstance(value, float) else str(value)).normalize()
    if exact == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return format(exact, "f")
    exponent = exact.adjusted()
    return f"{format(exact.scaleb(-exponent).normalize(), 'f')}e{exponent}"


def format_value(value: Any, digits: int | None = None) -> str:
    """A config value as a person (and Hydra's override grammar) writes it: numbers as `format_number`,
    booleans and null in YAML spelling, anything else as its text. Numeric strings (MLflow params) too."""
    if isinstance(value, bool) or value in ("True", "False"):
        return str(value).lower()
    if value is None or value == "None":
        return "null"
    if isinstance(value, (int, float)):
        return format_number(value, digits)
    try:
        return format_number(int(value) if str(value).lstrip("-").isdigit() else float(value), digits)
    except (TypeError, ValueError):
        return str(value)


def split_override(override: str) -> tuple[str, str]:
    """'+optimizer.lr=0.1' -> ('optimizer.lr', '0.1'); '~key' -> ('key', '')."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def format_override(override: str) -> str:
    """An override with its value written by `format_value` (lists, choices and groups left as typed)."""
    key, value = split_override(override)
    if "=" not in override or key.replace("/", ".") != key or "," in value or "(" in value:
        return override
    prefix = override[: len(override) - len(override.lstrip("+~"))]
    return f"{prefix}{key}={format_value(value)}"


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """A readable name such as 'lr=0.1 decay=1e-4 h=256', plus every other override that changes what
    is trained (so the configs of a sweep over, say, epochs or seeds get different names)."""
    if cfg.tracking.run_name:
        return str(cfg.tracking.run_name)
    parts = [
        f"lr={format_number(cfg.optimizer.lr, NAME_DIGITS)}",
        f"decay={format_number(cfg.model.decay, NAME_DIGITS)}",
        f"h={cfg.model.hidden_size}",
    ]
    for override in overrides:
        key, value = split_override(override)
        if "=" not in override or key in NAMED_KEYS or key.startswith(UNNAMED_PREFIXES):
            continue
        if key == "optimizer":  # a group choice: its name says it
            parts.append(value)
        else:
            parts.append(f"{SHORT_KEYS.get(key, key)}={format_value(value, NAME_DIGITS)}")
    return " ".join(parts)


def swept_keys(master: DictConfig) -> list[str]:
    """The keys a sweep varies, in the order the command gives them: its sweep overrides (`optimizer.lr=0.1,0.3`,
    `'model.decay=interval(0, 1e-3)'`) and its sweeper's `params` (a named sweep's, Optuna's). [] when the
    command cannot be read as overrides."""
    command = [str(o) for o in OmegaConf.select(master, "hydra.overrides.task", default=None) or []]
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None) or {}
    try:
        parsed = OverridesParser.create().parse_overrides(command)
    except HydraException:
        return []
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()] + [str(key) for key in params]
    return list(dict.fromkeys(key.lstrip("+~") for key in keys))


def swept_name(overrides: Sequence[str], swept: Collection[str]) -> str:
    """A config named by the values of the swept keys only ('lr=0.1 decay=1e-4'), as `run_name` writes them:
    what tells it from the other configs of its sweep. '' when no override names a swept key."""
    parts = []
    for override in overrides:
        key, value = split_override(override)
        if "=" not in override or key not in swept:
            continue
        if key == "optimizer":  # a group choice: its name says it
            parts.append(value)
        else:
            short = NAMED_KEYS.get(key) or SHORT_KEYS.get(key, key)
            parts.append(f"{short}={format_value(value, NAME_DIGITS)}")
    return " ".join(parts)
