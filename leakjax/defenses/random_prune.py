"""Random pruning of the client's update: every entry is zeroed independently with
probability ``random_prune_p`` (the ``random_pruning_p`` defense of DLF, Dimitrov et al.,
"Data Leakage in Federated Averaging", TMLR 2022). An adaptive attacker cannot know the
mask from the protocol; it ignores the zeroed coordinates of the observed update."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class RandomPrune(Defense):
    name = "random_prune"
    stage = "update"
    paper = "Dimitrov et al. 2022 (DLF), arXiv 2206.12395"
    summary = "zero each update entry independently with probability random_prune_p"
    zeroes = True

    random_prune_p: float = setting(0.5, low=0.0, high=1.0, high_open=True)

    def on_update(self, delta, key, ctx):
        if key is None or self.random_prune_p == 0:
            return delta
        leaves, treedef = jax.tree.flatten(delta)
        keys = jax.random.split(key, len(leaves))
        kept = [
            jnp.where(jax.random.bernoulli(k, 1.0 - self.random_prune_p, a.shape), a, 0)
            for k, a in zip(keys, leaves, strict=True)
        ]
        return jax.tree.unflatten(treedef, kept)
