"""Defenses: what a client or the server does to an update before the server sees it.

A defense is a frozen settings dataclass (its config keys under ``defense.``) with
``stage`` saying where it acts and one hook for that stage:

* ``'input'``: on the client's local data before its local training
  (``on_input(x, y, mask, key) -> (x, y)``; ``x`` normalized NHWC images, ``y`` labels).
* ``'step'``: inside every local SGD step, on the minibatch gradient
  (``wrap_grad(grad_fn) -> grad_fn``, a `leakjax.fl.client.GradFn`; through `client_step`).
* ``'update'``: on the client's final update ``delta = before - after``
  (``on_update(delta, key, ctx) -> delta``).
* ``'server'``: on the weighted mean of the round's updates
  (``on_server(mean_delta, key, max_weight) -> mean_delta``).
* ``'observation'``: on what the server records (secure aggregation).

``key`` is None when an attacker simulates the public part of a defense (an adaptive
attack): every defense then applies its deterministic part (clipping, pruning by a rule it
can evaluate) and draws no noise. A `Pipeline` is the chain of ``defense.name``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from leakjax.fl.client import UpdateContext
from leakjax.settings import Checked

STAGES = ("input", "step", "update", "server", "observation")


@dataclasses.dataclass(frozen=True)
class Defense(Checked):
    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: zeroes coordinates of the update (an adaptive attack ignores them in its loss).
    zeroes: ClassVar[bool] = False

    def on_input(self, x, y, mask, key):
        return x, y

    def wrap_grad(self, grad_fn):
        return grad_fn

    def on_update(self, delta, key, ctx: UpdateContext):
        return delta

    def on_server(self, mean_delta, key, max_weight):
        return mean_delta

    def accounting(self, run) -> Any:
        """`leakjax.defenses.accounting.Accounting` of this defense for ``run`` (a `RunFacts`),
        or None when it gives no formal guarantee."""
        return None


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What accounting needs to know about a federation and one client."""

    num_clients: int
    clients_per_round: int
    rounds: int
    epochs: int
    batch_size: int
    num_samples: int  # the client's n_k
    rounds_participated: int


def global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree)))


def clip_tree(tree, clip):
    """``tree * min(1, clip / ||tree||)`` (global L2 norm)."""
    scale = jnp.minimum(1.0, clip / jnp.maximum(global_norm(tree), 1e-12))
    return jax.tree.map(lambda a: a * scale.astype(a.dtype), tree)


def tree_noise(key, tree, std, kind: str = "gaussian"):
    """Noise shaped like ``tree``: Gaussian with std ``std``, or Laplace with scale ``std``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    draw = jax.random.normal if kind == "gaussian" else jax.random.laplace
    noise = [std * draw(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, noise)
