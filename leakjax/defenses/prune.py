"""Magnitude pruning / top-k sparsification of the client's update, per layer: in every
parameter array the ``floor(prune_ratio * size)`` entries of smallest magnitude are set to
zero (ties broken by position), the rest sent unchanged (Zhu et al., "Deep Leakage from
Gradients", NeurIPS 2019: pruning >= 20% stops DLG; Lin et al., "Deep Gradient
Compression", ICLR 2018)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense
from leakjax.settings import setting


def magnitude_mask(a: jax.Array, ratio: float) -> jax.Array:
    """Bool mask of ``a`` keeping all but the ``floor(ratio * a.size)`` smallest |entries|."""
    drop = math.floor(ratio * a.size)
    flat = jnp.abs(a).reshape(-1)
    rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
    return (rank >= drop).reshape(a.shape)


@dataclasses.dataclass(frozen=True)
class Prune(Defense):
    name = "prune"
    stage = "update"
    paper = "Zhu et al. 2019 (DLG), section 5; Lin et al. 2018 (DGC)"
    summary = "zero the prune_ratio smallest-magnitude entries of each layer's update"
    zeroes = True

    prune_ratio: float = setting(0.5, low=0.0, high=1.0, high_open=True)

    def on_update(self, delta, key, ctx):
        if self.prune_ratio == 0:
            return delta
        return jax.tree.map(lambda a: jnp.where(magnitude_mask(a, self.prune_ratio), a, 0), delta)
