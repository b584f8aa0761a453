"""``--config.GROUP.KEY=VALUE`` overrides, bound into a config by one schema.

The schema of a key is its field in `leakjax.config.base_config` (``fl.lr`` is a float,
``attack.rounds`` a tuple), or, in the two open groups, a setting of the chosen attack
(``attack.reorder``: `AttackSpec.settings`) or of a chained defense (``defense.clip``). So
every group is bound the same way, whether the config file sets the key or not: the text is
parsed by the field's type (`leakjax.settings.parse_value`), and a key that no field has is
one line naming the full key, with a "did you mean" (`leakjax.config.unknown_key`). Ranges
and cross-checks stay with `leakjax.config.validate`, which sees a config file's keys and the
command line's alike.

``attack.name`` and ``defense.name`` are bound first, since they choose the open groups'
schema. When ``attack.name`` replaces the file's attack, the file's settings of that other
attack are dropped (the chosen one runs with its own defaults), and a note says so.
"""

from __future__ import annotations

import copy
import difflib
import typing

from leakjax import attacks, defenses
from leakjax import settings as settings_lib
from leakjax.config import NO_ATTACK, base_config, model_options, unknown_key
from leakjax.types import ConfigError

PREFIX = "--config."


def split(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``argv`` without its ``--config.KEY=VALUE`` (or ``--config.KEY VALUE``) arguments,
    and those as ``(KEY, VALUE)`` pairs in command-line order."""
    rest, pairs = [], []
    args = iter(argv)
    for arg in args:
        if not arg.startswith(PREFIX):
            rest.append(arg)
            continue
        key, eq, value = arg[len(PREFIX) :].partition("=")
        if not eq:
            value = next(args, None)
            if value is None or value.startswith("--"):
                raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
        pairs.append((key, value))
    return rest, pairs


def _near(field: str, known) -> str:
    near = difflib.get_close_matches(field, list(known), n=1)
    return f"; did you mean {near[0]}?" if near else ""


def _base_field(key: str, config):
    """The schema's default for ``key`` (its type is the field's), or a ConfigError."""
    base = base_config()
    group, _, field = key.rpartition(".")
    options = model_options(config)
    if group == "model" and field in options and field not in base.model:
        return options[field]
    node = base[group] if group in base else None
    if "." in group or (group and not hasattr(node, "keys")) or field not in (node or base):
        raise ConfigError(unknown_key(key, config))
    value = (node or base)[field]
    if hasattr(value, "keys"):
        raise ConfigError(f"{key} is a group of settings; set one of its keys ({key}.KEY=VALUE)")
    return value


def _typed(key: str, text: str, annotation):
    """``text`` parsed for a field of ``annotation`` and checked for its type (an int given to
    a float field is a float; one int is a tuple of it); ranges are `validate`'s."""
    value = settings_lib.parse_value(key, text, annotation)
    if annotation is tuple and isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    return settings_lib.check_value(key, value, annotation, {})


def _attack_value(config, field: str, text: str):
    name = str(config.attack.name)
    if name == NO_ATTACK:
        raise ConfigError(f"attack.{field} is set but attack.name={NO_ATTACK!r}")
    if name not in attacks.names():
        raise ConfigError(f"attack.name={name!r} is not one of {(*attacks.names(), NO_ATTACK)}")
    spec = attacks.get(name)
    fields = {k: f for k, f in settings_lib.keys(spec.settings).items() if k != "labels"}
    if field not in fields:
        raise ConfigError(
            f"attack.{field} is not a setting of {name}{_near(field, fields)} "
            f"(its settings: {', '.join(fields)}; run settings: {', '.join(base_config().attack)})"
        )
    hint = typing.get_type_hints(spec.settings)[fields[field].name]
    return _typed(f"attack.{field}", text, hint)


def _defense_value(config, field: str, text: str):
    chain = [defenses.get(n) for n in defenses.parse_names(config.defense.get("name", "none"))]
    owner = next((c for c in chain if field in settings_lib.keys(c)), None)
    if owner is None:
        known = {k for c in chain for k in settings_lib.keys(c)}
        named = ", ".join(c.name for c in chain) or "none"
        raise ConfigError(
            f"defense.{field} is not a setting of the chained defenses ({named})"
            f"{_near(field, known)}; `leakjax --list=defenses` lists each defense's settings"
        )
    hint = typing.get_type_hints(owner)[settings_lib.keys(owner)[field].name]
    return _typed(f"defense.{field}", text, hint)


def _set(group, field: str, value) -> None:
    """``group[field] = value``, also where the file stored another type there (an int in a
    float field): the schema's type, checked by the caller, wins."""
    try:
        group[field] = value
    except TypeError:
        del group[field]
        group[field] = value


def apply(config, pairs: list[tuple[str, str]]):
    """``(config with the overrides bound, notes)``; ``config`` itself is not changed."""
    config = copy.deepcopy(config)
    notes = []
    file_names = {g: str(config[g].name) for g in ("attack", "model") if g in config}
    with config.unlocked():
        if "defense" not in config:
            config.defense = {"name": "none"}
        firsts = [(k, v) for k, v in pairs if k in ("attack.name", "defense.name", "model.name")]
        for key, text in firsts + [p for p in pairs if p not in firsts]:
            group, _, field = key.rpartition(".")
            if group == "attack" and field not in base_config().attack:
                _set(config.attack, field, _attack_value(config, field, text))
            elif group == "defense" and field != "name":
                _set(config.defense, field, _defense_value(config, field, text))
            else:
                value = _typed(key, text, type(_base_field(key, config)))
                if group and group not in config:
                    config[group] = {}
                _set(config[group] if group else config, field, value)
            if key in ("attack.name", "model.name") and value != file_names.get(group, value):
                notes += _drop_others(config, group, value, file_names[group])
    return config, notes


def _drop_others(config, group: str, name: str, file_name: str) -> list[str]:
    """When the command line names another attack (model) than the file's, the file's
    settings of that attack (options of that model) are dropped: the chosen one runs with its
    own defaults. Returns the note that says so, printed once every check has passed."""
    base = base_config()[group]
    keep = model_options(config) if group == "model" else {}
    dropped = sorted(k for k in config[group] if k not in base and k not in keep)
    for k in dropped:
        del config[group][k]
    if not dropped:
        return []
    return [
        f"leakjax: note: {group}.name={name!r} overrides the file's {file_name!r}; its "
        f"settings {', '.join(f'{group}.{k}' for k in dropped)} are not applied"
    ]
