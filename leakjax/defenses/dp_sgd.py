"""DP-SGD inside each local step (Abadi et al., "Deep Learning with Differential Privacy",
CCS 2016, arXiv 1607.00133): per-example gradients (``vmap``), each clipped to L2 norm
``clip`` (as `optax.per_example_global_norm_clip`, with a finite derivative at zero),
Gaussian noise of std ``noise_multiplier * clip`` added to their sum, divided by the
batch's number of rows.

BatchNorm statistics, where the model has them, come from the whole minibatch (they mix
examples; DP-SGD's guarantee covers the parameters only).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses import accounting
from leakjax.defenses.base import Defense, tree_noise
from leakjax.fl.client import loss_and_state
from leakjax.settings import setting


def _clipped_sum(per_ex, mask, clip):
    """``sum_i mask_i * g_i * min(1, clip / ||g_i||)`` over the leading axis.

    The same as `optax.per_example_global_norm_clip` on the masked gradients, but with a
    finite derivative where a per-example gradient is zero (a padding row): optax's
    ``sqrt`` there has an infinite derivative, which NaNs an attacker that differentiates
    through the simulated DP-SGD steps."""
    sq = sum(
        jnp.sum(jnp.square(a).reshape(a.shape[0], -1), axis=1) for a in jax.tree.leaves(per_ex)
    )
    safe = jnp.where(sq > 0, sq, 1.0)
    norm = jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
    scale = mask / jnp.maximum(norm / clip, 1.0)
    return jax.tree.map(lambda a: jnp.tensordot(scale.astype(a.dtype), a, axes=1), per_ex)


@dataclasses.dataclass(frozen=True)
class DPSGD(Defense):
    name = "dp_sgd"
    stage = "step"
    paper = "Abadi et al. 2016, arXiv 1607.00133"
    summary = "per-example clipping to clip + Gaussian noise z*clip in every local step"

    clip: float = setting(1.0, low=0.0, low_open=True, help="per-example L2 clip norm")
    noise_multiplier: float = setting(1.0, low=0.0, help="noise std / clip")
    delta: float = setting(1e-5, low=0.0, high=1.0, low_open=True, high_open=True)
    accountant: str = setting("rdp", choices=accounting.ACCOUNTANTS)

    def wrap_grad(self, grad_fn):
        clip, z = self.clip, self.noise_multiplier

        def dp_grad(apply, params, v, xb, yb, valid, key):
            loss, new_v = loss_and_state(apply, params, v, xb, yb, valid, True)

            def one(x, y):
                g, _ = jax.grad(loss_and_state, argnums=1, has_aux=True)(
                    apply, params, v, x[None], y[None], None, True
                )
                return g

            per_ex = jax.vmap(one)(xb, yb)
            m = valid.astype(jnp.float32)
            g = _clipped_sum(per_ex, m, clip)
            if key is not None and z > 0:
                g = jax.tree.map(jnp.add, g, tree_noise(key, g, z * clip))
            count = jnp.maximum(jnp.sum(m), 1.0)
            return loss, new_v, jax.tree.map(lambda a: a / count, g)

        return dp_grad

    def accounting(self, run):
        steps = run.rounds_participated * run.epochs * -(-run.num_samples // run.batch_size)
        return accounting.dp_sgd(
            self.noise_multiplier,
            run.batch_size,
            run.num_samples,
            steps,
            self.delta,
            self.accountant,
            sampling="shuffle",
        )
