"""Local noise in each local step, on the minibatch gradient: optional clipping of the batch
gradient to L2 norm ``grad_clip`` (0: none), then Gaussian or Laplacian noise of absolute
scale ``noise_scale``, with no privacy accounting (the noise defenses of Zhu et al., "Deep
Leakage from Gradients", NeurIPS 2019, and of breaching)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense, clip_tree, tree_noise
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class LocalNoise(Defense):
    name = "local_noise"
    stage = "step"
    paper = "Zhu et al. 2019 (DLG), section 5"
    summary = "Gaussian/Laplacian noise of absolute scale on each batch gradient (no accounting)"

    noise_scale: float = setting(1e-3, low=0.0, help="noise std (Gaussian) or scale (Laplace)")
    noise_kind: str = setting("gaussian", choices=("gaussian", "laplace"))
    grad_clip: float = setting(0.0, low=0.0, help="batch-gradient L2 clip (0: no clipping)")

    def wrap_grad(self, grad_fn):
        def noisy(apply, params, v, xb, yb, valid, key):
            loss, new_v, g = grad_fn(apply, params, v, xb, yb, valid, None)
            if self.grad_clip > 0:
                g = clip_tree(g, self.grad_clip)
            if key is not None and self.noise_scale > 0:
                g = jax.tree.map(jnp.add, g, tree_noise(key, g, self.noise_scale, self.noise_kind))
            return loss, new_v, g

        return noisy
