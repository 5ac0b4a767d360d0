"""Reading a config object from cdk.json context: a strict converter from JSON (and `-c` strings) to dataclasses.

Generic: it knows nothing about the app's sections (stacks/config/app_config.py declares them). `build` walks a
frozen dataclass's type hints; unknown keys fail with the full dotted key, JSON values are taken strictly as typed,
and a `ConfigError` raised by a section's `__post_init__` (naming its own field) is re-raised with the section's
dotted path in front, so every error reads `photo_labeler.<section>.<key>: <what is wrong>`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from stacks.common import constants

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


def check(condition: bool, key: str, message: str) -> None:
    """Raise `ConfigError(key, message)` unless `condition`: a section's `__post_init__` names its own field."""
    if not condition:
        raise ConfigError(key, message)


def build(cls: type[T], raw: Any, path: str) -> T:
    """The dataclass `cls` from the JSON object `raw` found at the dotted `path` (absent fields: defaults)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"must be an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", f"unknown key; expected one of {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, f"{path}.{name}")
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{path}.{error.key}", error.reason) from None


class _CliString(str):
    """A `-c key=value` string, converted to the field's type instead of being type-checked."""


def _from_cli(hint: Any, value: _CliString, path: str) -> Any:
    if hint is str:
        return str(value)
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(
            path, f"cannot read {str(value)!r} from the command line as {getattr(hint, '__name__', hint)}"
        ) from None
    return _convert(hint, decoded, path)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, _CliString) and value in ("null", "")):
            return None
        return _convert(options[0], value, path)
    if isinstance(value, _CliString):
        return _from_cli(hint, value, path)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"must be a list, got {value!r}")
        (item_hint, *_rest) = typing.get_args(hint)
        return tuple(_convert(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"must be an object, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"{path}: unsupported config field type {hint!r}")


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `photo_labeler.a.b=value` command-line context into the nested object.

    Command-line values arrive as strings; they are converted to the field's type when parsed (`_convert`), so
    `-c photo_labeler.endpoint.min_capacity=2` is the integer 2, `...account=012345678901` stays a string and
    `...model_data_uri=null` is None. JSON in cdk.json is taken strictly as typed.
    """
    prefix = constants.CONTEXT_KEY + "."
    for dotted, value in sorted(overrides.items()):
        if not dotted.startswith(prefix):
            continue
        parts = dotted[len(prefix) :].split(".")
        if not all(parts):
            raise ConfigError(dotted, "is not a valid dotted key")
        if isinstance(value, str):
            value = _CliString(value)
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                raise ConfigError(
                    prefix + ".".join(parts[: depth + 1]), "is not an object; cannot override inside it"
                )
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return raw
