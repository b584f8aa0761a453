"""Defenses against gradient leakage: a registry (one module each) and the chain
``defense.name`` builds (`Pipeline`). `python -m leakjax.defenses --list` prints them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from leakjax import settings as settings_lib
from leakjax.defenses.base import STAGES, Defense, RunFacts, UpdateContext
from leakjax.defenses.clip_update import ClipUpdate
from leakjax.defenses.dp_fedavg import DPFedAvg
from leakjax.defenses.dp_sgd import DPSGD
from leakjax.defenses.input_noise import InputNoise
from leakjax.defenses.local_noise import LocalNoise
from leakjax.defenses.prune import Prune
from leakjax.defenses.quantize import Quantize
from leakjax.defenses.random_prune import RandomPrune
from leakjax.defenses.secure_agg import SecureAgg
from leakjax.defenses.sign import Sign
from leakjax.defenses.soteria import Soteria
from leakjax.fl.client import batch_gradient
from leakjax.types import ConfigError

_REGISTRY: dict[str, type[Defense]] = {}


def register(cls: type[Defense]) -> type[Defense]:
    if cls.name in _REGISTRY or cls.name == "none":
        raise ValueError(f"defense {cls.name!r} is already registered")
    if cls.stage not in STAGES:
        raise ValueError(f"defense {cls.name!r}: stage {cls.stage!r} not in {STAGES}")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (
    InputNoise,
    DPSGD,
    LocalNoise,
    ClipUpdate,
    Prune,
    RandomPrune,
    Quantize,
    Sign,
    Soteria,
    DPFedAvg,
    SecureAgg,
):
    register(_cls)


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> type[Defense]:
    if name not in _REGISTRY:
        raise ConfigError(f"defense.name: unknown defense {name!r} (choose from none, {names()})")
    return _REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """The chain of defenses, in pipeline order (input, step, update, server, observation)."""

    defenses: tuple[Defense, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.defenses)

    def __bool__(self) -> bool:
        return bool(self.defenses)

    def of(self, *stages) -> tuple[Defense, ...]:
        return tuple(d for d in self.defenses if d.stage in stages)

    @property
    def acts_on_input(self) -> bool:
        return bool(self.of("input"))

    def on_input(self, x, y, mask, key):
        """The client's local data through every input-level hook. ``key`` None: no
        randomness (an attacker's simulation)."""
        hooks = self.of("input")
        keys = [None] * len(hooks) if key is None else list(jax.random.split(key, len(hooks)))
        for d, k in zip(hooks, keys, strict=True):
            x, y = d.on_input(x, y, mask, k)
        return x, y

    def grad_fn(self):
        """The local steps' `GradFn` with every step-level defense, or None (plain FedAvg)."""
        steps = self.of("step")
        if not steps:
            return None
        fn = batch_gradient
        for d in steps:
            fn = d.wrap_grad(fn)
        return fn

    @property
    def acts_on_update(self) -> bool:
        return bool(self.of("update", "server"))

    def on_update(self, delta, key, ctx: UpdateContext | None):
        """The client's final update through every update-level hook (server-stage
        defenses clip here too). ``key`` None: no randomness (an attacker's simulation)."""
        hooks = self.of("update", "server")
        keys = [None] * len(hooks) if key is None else list(jax.random.split(key, len(hooks)))
        for d, k in zip(hooks, keys, strict=True):
            delta = d.on_update(delta, k, ctx)
        return delta

    def simulate_update(self, delta, observed):
        """An adaptive attacker's simulated update: the update hooks that zero nothing, with
        no randomness (clipping; quantization's expectation; sign), then the coordinates
        the client zeroed (``observed == 0``, under pruning or Soteria) zeroed too, so a
        matching loss ignores them."""
        for d in self.of("update", "server"):
            if not d.zeroes:
                delta = d.on_update(delta, None, None)
        if self.zeroes:
            delta = jax.tree.map(lambda s, o: jnp.where(o != 0, s, 0), delta, observed)
        return delta

    @property
    def acts_on_server(self) -> bool:
        return bool(self.of("server"))

    def on_server(self, mean_delta, key, max_weight):
        for d in self.of("server"):
            mean_delta = d.on_server(mean_delta, key, max_weight)
        return mean_delta

    @property
    def secure_agg_clients(self) -> int:
        sa = self.of("observation")
        return int(sa[0].secure_agg_clients) if sa else 1

    @property
    def zeroes(self) -> bool:
        return any(d.zeroes for d in self.defenses)

    def accounting(self, run: RunFacts) -> list[dict]:
        out = []
        for d in self.defenses:
            acc = d.accounting(run)
            if acc is not None:
                out.append({"defense": d.name, **acc.to_dict()})
        return out

    def settings(self) -> dict:
        return {d.name: dataclasses.asdict(d) for d in self.defenses}


def parse_names(text) -> list[str]:
    names_ = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names_ or names_ == ["none"]:
        return []
    if "none" in names_:
        raise ConfigError(f"defense.name={text!r}: 'none' cannot be chained with other defenses")
    dup = sorted({n for n in names_ if names_.count(n) > 1})
    if dup:
        raise ConfigError(f"defense.name={text!r} names {dup[0]!r} twice")
    for n in names_:
        get(n)
    return names_


def bind(group: Mapping | None) -> Pipeline:
    """The `Pipeline` of a config's ``defense`` group (``defense.name`` plus each chained
    defense's keys; a key no chained defense has is an error naming ``defense.<key>``)."""
    group = {} if group is None else group
    chain = [get(n) for n in parse_names(group.get("name", "none"))]
    all_keys = {k for cls in chain for k in settings_lib.keys(cls)}
    built = []
    for cls in chain:
        own = set(settings_lib.keys(cls))
        skip = {"name"} | (all_keys - own)
        built.append(settings_lib.bind(cls, group, prefix="defense", skip=skip, owner=cls.name))
    if not chain:
        extra = sorted(k for k in group if k != "name")
        if extra:
            raise ConfigError(
                f"defense.{extra[0]} is set but defense.name is 'none' (choose from {names()})"
            )
    order = {s: i for i, s in enumerate(STAGES)}
    built.sort(key=lambda d: order[d.stage])
    return Pipeline(tuple(built))


@functools.cache
def describe_all() -> list[str]:
    lines = []
    for n, cls in _REGISTRY.items():
        lines.append(f"{n:13s} [{cls.stage}] {cls.summary} ({cls.paper})")
        lines += ["    " + s for s in settings_lib.describe(cls)]
    return lines


__all__ = ["Defense", "Pipeline", "RunFacts", "UpdateContext", "bind", "get", "names"]
