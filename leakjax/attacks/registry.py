"""One registry of attacks by name (configs, CLI and tests look them up here).

An attack module declares one spec, an `AttackSpec` (a server-side attack) or a
`ClientAttackSpec` (a malicious client), and registers itself: ``SPEC = register(...)`` at its
bottom; `leakjax/attacks/__init__.py` imports it (one line in its import block; BUILD_NOTES,
"Adding an attack"). Everything else (binding its settings from ``config.attack``, label
resolution, mode checks, what it needs of the config and the model) is generic and lives here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import jax.numpy as jnp

from leakjax import labels as labels_lib
from leakjax import settings as settings_lib
from leakjax.attacks import base
from leakjax.types import ConfigError

# Keys of ``config.attack`` read by the run loop and the experiment, not by an attack.
RUN_KEYS = (
    "name",
    "adaptive",
    "mode",
    "rounds",
    "clients",
    "batch_size",
    "steps",
    "restarts",
    "chunk",
    "labels",
    "success_psnr",
    "checkpoint_every",
    "num_devices",
    "vmap_chunk",
)
UPSTREAM_LABELS = ("oracle",)  # plus leakjax.labels.METHODS: run before the attack


def _no_requirements(config) -> None:
    del config


def _same_model(model, config):
    del config
    return model


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What every attack spec has: its name, modes, factory, settings and their binding.

    Attributes:
      name: registry name (``attack.name`` in configs).
      modes: observation modes it supports ('gradient', 'fedavg').
      make: the factory (its signature: the subclass's).
      settings: the frozen dataclass of the attack's settings (`leakjax.settings.setting`
        fields); `bind` builds it from ``config.attack``.
      paper: citation.
      check: ``check(settings, mode)`` for cross-setting checks (one-line ConfigError), or None.
      example: ``(('model.name', 'fc2'), ...)``: config overrides under which the attack runs
        on the quickstart's data (its model requirements); the registry contract test
        (tests/test_attack_contract.py) runs every attack with them.
      requires: ``requires(config) -> None``: what the attack needs of the rest of the config
        (e.g. RTF: ``model.imprint_bins > 0``); raises a one-line ConfigError.
        `leakjax.config.validate` calls it for the chosen attack.
      prepare_model: ``prepare_model(model, config) -> model``: the model the federation
        trains when this attack is chosen (default: the model itself);
        `leakjax.experiment.prepare` calls it for every attack, client attacks included.
    """

    name: str
    modes: tuple[str, ...]
    make: Callable
    settings: type
    paper: str
    check: Callable | None = None
    example: tuple[tuple[str, object], ...] = ()
    requires: Callable = _no_requirements
    prepare_model: Callable = _same_model

    # attacks that handle no label mode of their own (AttackSpec: fields)
    label_modes: ClassVar[tuple[str, ...]] = ("auto",)
    auto_labels: ClassVar[str | None] = None

    def allowed_labels(self) -> tuple[str, ...]:
        out = ["auto"] if self.auto_labels else []
        for v in (*self.label_modes, *UPSTREAM_LABELS, *labels_lib.METHODS):
            if v not in out:
                out.append(v)
        return tuple(out)

    def upstream_labels(self, config_labels: str) -> str | None:
        """The upstream label source for ``attack.labels``: 'oracle', a `leakjax.labels`
        method, or None (the attack finds its labels itself)."""
        if config_labels == "auto" and self.auto_labels:
            return self.auto_labels
        return None if config_labels in self.label_modes else config_labels

    def label_mode(self, config_labels: str) -> str:
        """``attack.labels`` as this attack's own label mode ('fixed' when resolved upstream)."""
        allowed = self.allowed_labels()
        if config_labels not in allowed:
            raise ConfigError(
                f"attack.labels={config_labels!r} is not one of {allowed} "
                f"(attack.name={self.name!r})"
            )
        return "fixed" if self.upstream_labels(config_labels) else config_labels

    def bind(self, acfg):
        """The attack's settings from ``config.attack`` (defaults for absent keys)."""
        fields = settings_lib.keys(self.settings)
        fixed = {}
        if "labels" in fields:
            fixed["labels"] = self.label_mode(str(acfg.get("labels", "auto")))
        else:
            self.label_mode(str(acfg.get("labels", "auto")))
        cfg = settings_lib.bind(
            self.settings, acfg, prefix="attack", skip=RUN_KEYS, owner=self.name, **fixed
        )
        mode = str(acfg.get("mode", self.modes[0]))
        self.check_mode(mode)
        if self.check is not None:
            self.check(cfg, mode)
        return cfg

    def check_mode(self, mode: str) -> None:
        """One-line ConfigError when this attack does not support ``attack.mode=mode``."""
        if mode not in self.modes:
            raise ConfigError(
                f"attack.mode={mode!r} is not supported by {self.name} (supports {self.modes})"
            )

    def describe(self) -> list[str]:
        return settings_lib.describe(self.settings, skip=("labels",))


@dataclasses.dataclass(frozen=True)
class AttackSpec(_Spec):
    """A server-side attack: an `Attack` run by `attacks.run` on what the server observes.

    Attributes (besides `_Spec`'s):
      make: ``make(obs, model, settings, *, steps, box, labels) -> Attack``; ``labels`` are
        fixed int labels [N] (the truth under ``attack.labels='oracle'``, or a
        `leakjax.labels` method's output) or None.
      label_modes: the attack's own label modes (``attack.labels`` values it handles itself,
        e.g. 'auto', 'optimize'); every other allowed value is resolved upstream and arrives
        as 'fixed'. Empty: the attack needs labels from upstream.
      auto_labels: the upstream method that ``attack.labels='auto'`` means for an attack
        without label modes of its own (e.g. DLF: 'dimitrov').
      kind: 'optimization' or 'analytic'.
      sequential_on_cpu: ``f(settings) -> bool``: `attacks.run`'s auto ``vmap_chunk`` runs
        this attack's restarts one after another on CPU in every mode (not only fedavg).
      hyperparams: the settings fields that are traced (float scalars in jnp math or optax:
        lr, prior weights): `hparams` extracts them, ``make(..., hparams=...)`` takes them
        (`leakjax.attacks.base.hyperparams`) and `attacks.run` passes them to its compiled
        programs as arguments, so other values reuse the program. Empty: ``make`` takes none.
    """

    label_modes: tuple[str, ...] = ("auto",)
    auto_labels: str | None = None
    kind: str = "optimization"
    sequential_on_cpu: Callable | None = None
    hyperparams: tuple[str, ...] = ()

    def __post_init__(self):
        fields = {f.name for f in dataclasses.fields(self.settings)}
        unknown = sorted(set(self.hyperparams) - fields)
        if unknown:
            raise ValueError(f"{self.name}: hyperparams {unknown} are not settings fields")

    def hparams(self, settings) -> dict:
        """The traced hyperparameters of bound ``settings``: {name: float32 scalar}."""
        return base.hyperparams(settings, self.hyperparams)

    def build(self, obs, model, acfg, *, box, labels=None, hparams=None):
        """``make`` on bound ``config.attack``; ``hparams`` (traced values, `hparams`'s
        keys) replace the settings' values of `hyperparams` (None: those values)."""
        extra = {"hparams": hparams} if self.hyperparams else {}
        return self.make(
            obs, model, self.bind(acfg), steps=int(acfg.steps), box=box, labels=labels, **extra
        )

    def sequential(self, acfg) -> bool:
        """`sequential_on_cpu` for ``config.attack`` (False when unset)."""
        return bool(self.sequential_on_cpu and self.sequential_on_cpu(self.bind(acfg)))


@dataclasses.dataclass(frozen=True)
class ClientAttackSpec(_Spec):
    """A client-side attack: a malicious client (`leakjax.attacks.client.ClientAttack`) that
    `leakjax.experiment.run` hands to `leakjax.client_attack.run`.

    Attributes (besides `_Spec`'s):
      make: ``make(inputs, settings) -> ClientAttack``, ``inputs`` a
        `leakjax.attacks.client.ClientInputs`.
    """

    kind: ClassVar[str] = "client"


def resolve_labels(mode: str, labels, *, otherwise: str, num: int | None = None):
    """An attack's own label mode (its bound ``attack.labels``) and the labels it fixes.

    Args:
      mode: the bound label mode ('fixed' when resolved upstream, 'auto', or one of the
        attack's `AttackSpec.label_modes`).
      labels: the int labels [N] given to the attack's ``make`` (the truth or a
        `leakjax.labels` method's output), or None.
      otherwise: what 'auto' means when no labels were given (e.g. 'optimize', 'idlg').
      num: when given, fixed labels must have shape ``(num,)``.

    Returns:
      ``(mode, fixed)``: 'auto' becomes 'fixed' when labels were given, else ``otherwise``;
      ``fixed`` is int32 [N] for 'fixed', else None (the attack finds its labels itself).
    """
    if mode == "auto":
        mode = "fixed" if labels is not None else otherwise
    if mode != "fixed":
        return mode, None
    if labels is None:
        raise ConfigError("attack.labels: fixed labels requested but none were given")
    fixed = jnp.asarray(labels, jnp.int32)
    if num is not None and fixed.shape != (num,):
        raise ConfigError(f"attack.labels: got {tuple(fixed.shape)} labels for {num} images")
    return mode, fixed


_REGISTRY: dict[str, AttackSpec | ClientAttackSpec] = {}


def register(spec: AttackSpec | ClientAttackSpec) -> AttackSpec | ClientAttackSpec:
    """Add ``spec`` and return it (``SPEC = register(AttackSpec(...))`` at the bottom of an
    attack's module); a second attack of the same name is an error."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"an attack named {spec.name!r} is already registered")
    if not dataclasses.is_dataclass(spec.settings):
        raise TypeError(f"{spec.name}: AttackSpec.settings must be a dataclass")
    clash = sorted(set(settings_lib.keys(spec.settings)) & (set(RUN_KEYS) - {"labels"}))
    if clash:
        raise ValueError(f"{spec.name}: settings {clash} clash with the run-loop keys")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> AttackSpec | ClientAttackSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"attack.name={name!r} is not one of {tuple(names())}")
    return _REGISTRY[name]


def listing(name: str | None = None) -> list[str]:
    """``leakjax --list=attacks``: a line per attack, or one attack's settings (``name``)."""
    if name is None:
        return [f"{n:8s} {get(n).paper} (modes: {', '.join(get(n).modes)})" for n in names()]
    spec = get(name)
    head = f"{name}: {spec.paper}; modes {spec.modes}; labels {spec.allowed_labels()}"
    return [head, *spec.describe()]
