"""Matching and pairwise distances in JAX (jit / vmap-able), for objectives that align images
inside a traced computation (DLF's epoch copies). The host-side scoring match is
`leakjax.metrics.match` (scipy's ``linear_sum_assignment`` on float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from leakjax.types import Array


def pairwise_mse(a: Array, b: Array) -> Array:
    """[M, N] mean squared distance between every image of ``a`` [M, ...] and of ``b``."""
    fa = a.reshape(a.shape[0], -1)
    fb = b.reshape(b.shape[0], -1)
    d = jnp.sum(fa * fa, 1)[:, None] + jnp.sum(fb * fb, 1)[None, :] - 2.0 * fa @ fb.T
    return jnp.maximum(d / fa.shape[1], 0.0)


def linear_sum_assignment(cost: Array) -> Array:
    """Minimum-cost perfect matching of a square cost matrix, in JAX (jit/vmap-able).

    The shortest-augmenting-path Hungarian algorithm (O(n^3)); exact for finite costs.

    Args:
      cost: [n, n].

    Returns:
      int32 [n]: the column matched to each row.
    """
    n = cost.shape[0]
    dt = cost.dtype
    big = jnp.asarray(jnp.finfo(dt).max / 4, dt)
    a = jnp.zeros((n + 1, n + 1), dt).at[1:, 1:].set(cost)
    cols = jnp.arange(n + 1)

    def add_row(i, carry):
        u, v, p, way = carry
        p = p.at[0].set(i)

        def body(s):
            u, v, p, way, minv, used, j0 = s
            used = used.at[j0].set(True)
            i0 = p[j0]
            cur = a[i0] - u[i0] - v
            free = (~used) & (cols > 0)
            better = free & (cur < minv)
            minv = jnp.where(better, cur, minv)
            way = jnp.where(better, j0, way)
            masked = jnp.where(free, minv, big)
            j1 = jnp.argmin(masked).astype(jnp.int32)
            delta = masked[j1]
            u = u.at[p].add(jnp.where(used, delta, jnp.zeros((), dt)))
            v = jnp.where(used, v - delta, v)
            minv = jnp.where(used, minv, minv - delta)
            return u, v, p, way, minv, used, j1

        s0 = (u, v, p, way, jnp.full((n + 1,), big, dt), jnp.zeros((n + 1,), bool), jnp.int32(0))
        u, v, p, way, _, _, j0 = jax.lax.while_loop(lambda s: s[2][s[6]] != 0, body, s0)

        def augment(s):
            p, j0 = s
            j1 = way[j0]
            return p.at[j0].set(p[j1]), j1

        p, _ = jax.lax.while_loop(lambda s: s[1] != 0, augment, (p, j0))
        return u, v, p, way

    zeros_f = jnp.zeros((n + 1,), dt)
    zeros_i = jnp.zeros((n + 1,), jnp.int32)
    _, _, p, _ = jax.lax.fori_loop(1, n + 1, add_row, (zeros_f, zeros_f, zeros_i, zeros_i))
    return jnp.zeros((n,), jnp.int32).at[p[1:] - 1].set(jnp.arange(n, dtype=jnp.int32))
