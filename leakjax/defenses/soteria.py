"""Soteria (Sun et al., "Soteria: Provable Defense against Privacy Leakage in Federated
Learning from Representation Perspective", CVPR 2021, arXiv 2012.06043): perturb the
representation's gradient where it reveals the input most. For every feature i of the
representation r = the input of the model's last dense layer ('head'), the score
``sum_b |r_bi| / ||d r_bi / d x_b||`` (small: a feature that changes a lot with the input
for its size) ranks the features; the head kernel's rows of the ``soteria_ratio`` fraction
with the smallest scores are zeroed in the client's update. Scores use the received model
and the client's data (BatchNorm in eval mode)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense
from leakjax.settings import setting


def feature_scores(model, variables, x, mask) -> jax.Array:
    """[F] Soteria's score of each representation feature over the valid rows of ``x``."""
    f = lambda xx: model.features(variables, xx)
    r, vjp = jax.vjp(f, x)

    def grad_norm(i):
        (gx,) = vjp(jnp.zeros_like(r).at[:, i].set(1.0))
        return jnp.sqrt(jnp.sum(jnp.square(gx.reshape(gx.shape[0], -1)), axis=-1))

    norms = jax.lax.map(grad_norm, jnp.arange(r.shape[1])).T  # [B, F]
    m = mask.astype(r.dtype)[:, None]
    return jnp.sum(m * jnp.abs(r) / jnp.maximum(norms, 1e-12), axis=0)


@dataclasses.dataclass(frozen=True)
class Soteria(Defense):
    name = "soteria"
    stage = "update"
    paper = "Sun et al. 2021, arXiv 2012.06043"
    summary = "zero the head-kernel rows of the representation features that reveal most"
    zeroes = True

    soteria_ratio: float = setting(0.8, low=0.0, high=1.0, high_open=True)

    def on_update(self, delta, key, ctx):
        if ctx is None or self.soteria_ratio == 0 or "head" not in delta:
            return delta
        scores = feature_scores(ctx.model, ctx.variables, ctx.x, ctx.mask)
        drop = math.floor(self.soteria_ratio * scores.shape[0])
        rank = jnp.argsort(jnp.argsort(scores, stable=True), stable=True)
        keep = rank >= drop
        head = dict(delta["head"])
        head["kernel"] = jnp.where(keep[:, None], head["kernel"], 0)
        out = dict(delta)
        out["head"] = head
        return out
