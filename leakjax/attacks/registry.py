"""One registry of attacks by name (configs, CLI and tests look them up here).

An attack module declares one `AttackSpec` and registers it with `@register`-style
``register(SPEC)`` in `leakjax/attacks/__init__.py`; everything else (binding its settings
from ``config.attack``, label resolution, mode checks) is generic and lives here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """How to build and check one attack.

    Attributes:
      name: registry name (``attack.name`` in configs).
      modes: observation modes it supports ('gradient', 'fedavg').
      make: ``make(obs, model, settings, *, steps, box, labels) -> Attack``; ``labels`` are
        fixed int labels [N] (the truth under ``attack.labels='oracle'``, or a
        `leakjax.labels` method's output) or None.
      settings: the frozen dataclass of the attack's settings (`leakjax.settings.setting`
        fields); `bind` builds it from ``config.attack``.
      label_modes: the attack's own label modes (``attack.labels`` values it handles itself,
        e.g. 'auto', 'optimize'); every other allowed value is resolved upstream and arrives
        as 'fixed'. Empty: the attack needs labels from upstream.
      auto_labels: the upstream method that ``attack.labels='auto'`` means for an attack
        without label modes of its own (e.g. DLF: 'dimitrov').
      check: ``check(settings, mode)`` for cross-setting checks (one-line ConfigError), or None.
      paper: citation.
      kind: 'optimization' or 'analytic' (an `Attack` run by `attacks.run` on what the server
        observes), or 'client': a malicious client; then ``make(prepared, settings)``
        returns it (`leakjax.client_attack`: `simulate`'s ``client_override``) and
        `leakjax.experiment.run` runs it through `leakjax.client_attack.run`.
      sequential_on_cpu: ``f(settings) -> bool``: `attacks.run`'s auto ``vmap_chunk`` runs
        this attack's restarts one after another on CPU in every mode (not only fedavg).
      example: ``(('model.name', 'fc2'), ...)``: config overrides under which the attack runs
        on the quickstart's data (its model requirements); the registry contract test
        (tests/test_attack_contract.py) runs every attack with them.
      hyperparams: the settings fields that are traced (float scalars in jnp math or optax:
        lr, prior weights): `hparams` extracts them, ``make(..., hparams=...)`` takes them
        (`leakjax.attacks.base.hyperparams`) and `attacks.run` passes them to its compiled
        programs as arguments, so other values reuse the program. Empty: ``make`` takes none.
    """

    name: str
    modes: tuple[str, ...]
    make: Callable
    settings: type
    paper: str
    label_modes: tuple[str, ...] = ("auto",)
    auto_labels: str | None = None
    check: Callable | None = None
    kind: str = "optimization"
    sequential_on_cpu: Callable | None = None
    example: tuple[tuple[str, object], ...] = ()
    hyperparams: tuple[str, ...] = ()

    def __post_init__(self):
        fields = {f.name for f in dataclasses.fields(self.settings)}
        unknown = sorted(set(self.hyperparams) - fields)
        if unknown:
            raise ValueError(f"{self.name}: hyperparams {unknown} are not settings fields")

    def hparams(self, settings) -> dict:
        """The traced hyperparameters of bound ``settings``: {name: float32 scalar}."""
        return base.hyperparams(settings, self.hyperparams)

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
        if mode not in self.modes:
            raise ConfigError(
                f"attack.mode={mode!r} is not supported by {self.name} (supports {self.modes})"
            )
        if self.check is not None:
            self.check(cfg, mode)
        return cfg

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

    def describe(self) -> list[str]:
        return settings_lib.describe(self.settings, skip=("labels",))


_REGISTRY: dict[str, AttackSpec] = {}


def register(spec: AttackSpec) -> AttackSpec:
    """Add ``spec``; a second attack of the same name is an error."""
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


def get(name: str) -> AttackSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"attack.name={name!r} is not one of {tuple(names())}")
    return _REGISTRY[name]
