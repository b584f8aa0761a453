"""One registry of attacks by name (configs, CLI and tests look them up here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from leakjax.types import ConfigError


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """How to build and check one attack.

    Attributes:
      name: registry name (``attack.name`` in configs).
      modes: observation modes it supports ('gradient', 'fedavg').
      kind: 'optimization' (an `Attack` run by `attacks.run`).
      build: ``build(obs, model, attack_cfg, *, box, labels) -> Attack`` where
        ``attack_cfg`` is the config's ``attack`` group and ``labels`` are fixed int
        labels [N] (the truth under ``attack.labels='oracle'``, or the output of a
        `leakjax.labels` method, run by the experiment before the attack) or None.
      check: ``check(attack_cfg)`` raises ConfigError for bad attack-specific settings.
      paper: citation.
      sequential_on_cpu: ``f(attack_cfg) -> bool``: `attacks.run`'s auto ``vmap_chunk`` runs
        this attack's restarts one after another on CPU in every mode (not only fedavg),
        e.g. DLG with its zoom line search, which vmapped evaluates every restart until the
        slowest one is done. None: only in fedavg mode.
    """

    name: str
    modes: tuple[str, ...]
    kind: str
    build: Callable
    check: Callable
    paper: str
    sequential_on_cpu: Callable | None = None

    def sequential(self, attack_cfg) -> bool:
        """`sequential_on_cpu` for ``attack_cfg`` (False when unset)."""
        return bool(self.sequential_on_cpu and self.sequential_on_cpu(attack_cfg))


_REGISTRY: dict[str, AttackSpec] = {}


def register(spec: AttackSpec) -> AttackSpec:
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> AttackSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"attack.name={name!r} is not one of {tuple(names())}")
    return _REGISTRY[name]


def option(acfg, key: str, default):
    """``acfg.key`` (``default`` when absent) converted to ``type(default)``.

    For attack-specific keys that configs may leave out; a value of the wrong type is a
    one-line ConfigError naming ``attack.<key>``.
    """
    value = acfg.get(key, default)
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"attack.{key} must be True or False, got {value!r}")
        return value
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"attack.{key} must be a number, got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(f"attack.{key} must be an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"attack.{key} must be a string, got {value!r}")
    return kind(value)
