"""Stochastic uniform quantization of the client's update, per layer (QSGD: Alistarh et al.,
"QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding", NeurIPS 2017):
``Q(v)_i = ||v|| * sign(v_i) * xi_i / s`` with ``s = levels - 1`` intervals and ``xi_i`` the
randomized rounding of ``s |v_i| / ||v||`` to a neighbouring integer; unbiased,
``E[Q(v)] = v``. With no key (an attacker's simulation) it returns its expectation, ``v``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense
from leakjax.settings import setting


def qsgd(key, v: jax.Array, s: int) -> jax.Array:
    norm = jnp.sqrt(jnp.sum(jnp.square(v)))
    r = s * jnp.abs(v) / jnp.maximum(norm, 1e-30)
    low = jnp.floor(r)
    xi = low + jax.random.bernoulli(key, r - low).astype(v.dtype)
    return norm * jnp.sign(v) * xi / s


@dataclasses.dataclass(frozen=True)
class Quantize(Defense):
    name = "quantize"
    stage = "update"
    paper = "Alistarh et al. 2017 (QSGD), arXiv 1610.02132"
    summary = "unbiased stochastic quantization of each layer's update to `levels` levels"

    levels: int = setting(16, low=2, help="quantization levels per sign (s = levels - 1)")

    def on_update(self, delta, key, ctx):
        if key is None:
            return delta
        leaves, treedef = jax.tree.flatten(delta)
        keys = jax.random.split(key, len(leaves))
        s = self.levels - 1
        return jax.tree.unflatten(
            treedef, [qsgd(k, a, s) for k, a in zip(keys, leaves, strict=True)]
        )
