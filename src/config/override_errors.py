"""The errors of an override netsweep applies to a composed config (a sweep job's value): Hydra's
ConfigCompositionException, so Hydra's contract is unchanged, and netsweep's, so the CLI says them in one line."""

from textwrap import dedent
from typing import Any

from hydra.errors import ConfigCompositionException

from src.errors import NetsweepError


class OverrideError(NetsweepError, ConfigCompositionException):
    """An override netsweep applied to a composed config (a sweep job's value) failed.

    A ConfigCompositionException with the very text Hydra gives the same mistake, so Hydra's contract is
    unchanged; the CLI's one-line message is made from the fields, never from the text.
    """

    def __init__(self, key: str, line: str, *details: Any) -> None:
        super().__init__(key, line, *details)  # all arguments in `args`, so the error pickles
        self.key = key  # the dotted key the override names, e.g. optimizer.lr
        self.line = line  # the override as written, e.g. +optimizer.lr=0.1


class UnknownKey(OverrideError):
    """`key=value` names a key the config does not have."""

    def __str__(self) -> str:
        return f"Could not override '{self.key}'.\nTo append to your config use +{self.line}"


class KeyAlreadySet(OverrideError):
    """`+key=value` adds a key the config already has."""

    def __str__(self) -> str:
        return dedent(
            f"""\
            Could not append to config. An item is already at '{self.key}'.
            Either remove + prefix: '{self.line[1:]}'
            Or add a second + to add or override '{self.key}': '+{self.line}'"""
        )


class BadOverride(OverrideError):
    """The value of `key=value` does not fit the key (a wrong type, not one of an Enum's values)."""

    def __init__(self, key: str, line: str, value: Any, reason: Exception) -> None:
        super().__init__(key, line, value, reason)
        self.value = value  # as the override grammar parsed it
        self.reason = reason  # OmegaConf's error; its `object_type` is the schema that declares `key`

    def __str__(self) -> str:
        return f"Error merging override {self.line}"
