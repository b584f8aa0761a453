"""Sign compression of the client's update, per layer, scaled by the layer's mean magnitude
so that FedAvg's average keeps its scale (signSGD: Bernstein et al., ICML 2018,
arXiv 1802.04434; the scaled form of Karimireddy et al., ICML 2019, arXiv 1901.09847).
Deterministic: an attacker's simulation applies it too, with a straight-through gradient."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense


def scaled_sign(a: jax.Array) -> jax.Array:
    out = jnp.mean(jnp.abs(a)) * jnp.sign(a)
    return a + jax.lax.stop_gradient(out - a)  # forward: the sign; backward: identity


@dataclasses.dataclass(frozen=True)
class Sign(Defense):
    name = "sign"
    stage = "update"
    paper = "Bernstein et al. 2018 (signSGD), arXiv 1802.04434"
    summary = "send mean|update| * sign(update) per layer"

    def on_update(self, delta, key, ctx):
        return jax.tree.map(scaled_sign, delta)
