"""Typed settings bound from a config group: one binder for attacks (and later defenses).

A component declares its settings as a frozen dataclass whose fields carry their default,
allowed values and range through `setting(...)`. `bind(cls, group, prefix=...)` builds the
dataclass from a config group (an ml_collections ConfigDict or a mapping):

- fields absent from the group take the dataclass default (the component's documented one);
- a key of the group that is no field (and not one of ``skip``) is a one-line ConfigError
  naming ``<prefix>.<key>`` and listing the settings;
- values are type-checked against the field's annotation (bool, int, float, str, an optional
  of one of them, or a tuple), floats must be finite, and ranges / choices are checked.

`parse_value` turns a command-line string into a field's type, so that every setting can be
overridden with ``--config.<prefix>.<key>=<value>`` even when the config file does not set it.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Collection, Mapping

from leakjax.types import ConfigError

_META = "leakjax"


def setting(
    default,
    *,
    choices: Collection | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    key: str | None = None,
    help: str = "",  # noqa: A002 - the dataclass-field vocabulary
):
    """A dataclass field with the binder's metadata.

    Args:
      default: the documented default.
      choices: allowed values (strings, usually).
      low, high: numeric range; ``low_open`` / ``high_open`` exclude the bound.
      key: the config key when it differs from the field name (e.g. DLG's ``memory`` is
        ``attack.lbfgs_memory``).
      help: one line for listings.
    """
    meta = dict(
        choices=None if choices is None else tuple(choices),
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        key=key,
        help=help,
    )
    return dataclasses.field(default=default, metadata={_META: meta})


def _meta(field: dataclasses.Field) -> Mapping:
    return field.metadata.get(_META, {})


def config_key(field: dataclasses.Field) -> str:
    return field.metadata.get(_META, {}).get("key") or field.name


def keys(cls) -> dict[str, dataclasses.Field]:
    """The config keys of a settings dataclass, mapped to their fields."""
    return {config_key(f): f for f in dataclasses.fields(cls) if f.init}


def _base_types(annotation) -> tuple[type, bool]:
    """(the value type, whether None is allowed) of a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        none_ok = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return _base_types(args[0])[0], none_ok
        return object, none_ok
    if origin is tuple or annotation is tuple:
        return tuple, False
    return annotation, False


def _describe(kind) -> str:
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def check_value(name: str, value, annotation, meta: Mapping):
    """``value`` converted to the annotation's type, or a one-line ConfigError on ``name``."""
    kind, none_ok = _base_types(annotation)
    if value is None:
        if none_ok:
            return None
        raise ConfigError(f"{name} must be {_describe(kind)}, got None")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    elif kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name} must be {_describe(kind)}, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if kind is int:
            if int(value) != value:
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        _check_range(name, value, meta)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif kind is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a tuple, got {value!r}")
        value = tuple(value)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {tuple(choices)}")
    return value


def _check_range(name: str, value: float, meta: Mapping) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        raise ConfigError(
            f"{name} must be {'>' if meta.get('low_open') else '>='} {low}, got {value!r}"
        )
    if high is not None and (value > high or (meta.get("high_open") and value == high)):
        raise ConfigError(
            f"{name} must be {'<' if meta.get('high_open') else '<='} {high}, got {value!r}"
        )


class Checked:
    """Base of settings dataclasses: constructing one checks every plain value (types,
    finiteness, ranges, choices) as `bind` does, so that the Python API (``XConfig(lr=-1)``)
    fails as early and as clearly as the config file. Array values (traced hyperparameters)
    are left to the caller."""

    PREFIX = "attack"

    def __post_init__(self):
        hints = _hints(type(self))
        for k, f in keys(type(self)).items():
            value = getattr(self, f.name)
            if value is None or isinstance(value, numbers.Number | str | tuple | list):
                check_value(f"{self.PREFIX}.{k}", value, hints[f.name], _meta(f))


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def bind(cls, group: Mapping, *, prefix: str, skip: Collection[str] = (), owner=None, **fixed):
    """``cls`` built from ``group``: defaults for absent keys, a ConfigError for unknown
    keys, wrong types, non-finite floats and out-of-range values. ``fixed`` values (already
    resolved by the caller, e.g. an attack's label mode) are set without lookup; ``owner``
    names the component in messages."""
    fields = keys(cls)
    hints = _hints(cls)
    unknown = sorted(k for k in _group_keys(group) if k not in fields and k not in skip)
    if unknown:
        settings = ", ".join(sorted(k for k, f in fields.items() if f.name not in fixed))
        raise ConfigError(
            f"{prefix}.{unknown[0]} is not a setting of {owner or cls.__name__} "
            f"(its settings: {settings or 'none'})"
        )
    values = {}
    for k, f in fields.items():
        if f.name in fixed:
            values[f.name] = fixed[f.name]
            continue
        if k in _group_keys(group):
            values[f.name] = check_value(f"{prefix}.{k}", group[k], hints[f.name], _meta(f))
    return cls(**values)


def _group_keys(group) -> list[str]:
    return list(group.keys()) if hasattr(group, "keys") else list(group)


def describe(cls, skip: Collection[str] = ()) -> list[str]:
    """One line per setting: key, default, allowed values, help."""
    hints = _hints(cls)
    lines = []
    for k, f in keys(cls).items():
        if f.name in skip:
            continue
        meta = _meta(f)
        kind, none_ok = _base_types(hints[f.name])
        allowed = f" one of {meta['choices']}" if meta.get("choices") else f" ({_describe(kind)})"
        text = f"  {k} = {f.default!r}{allowed}"
        if meta.get("help"):
            text += f": {meta['help']}"
        lines.append(text)
    return lines


def parse_value(name: str, text: str, annotation):
    """A command-line string converted for a field of ``annotation`` (before `check_value`)."""
    kind, none_ok = _base_types(annotation)
    if none_ok and text.strip().lower() == "none":
        return None
    if kind is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name} must be True or False, got {text!r}")
    if kind is str:
        return text
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        if kind is float and text.strip().lower() in ("nan", "inf", "-inf", "+inf"):
            return float(text)
        raise ConfigError(f"{name} must be {_describe(kind)}, got {text!r}") from None
    return value
