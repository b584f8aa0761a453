"""Gradient-matching losses over parameter pytrees, and image priors.

- `l2`: sum over tensors of ||a - b||^2 (DLG, Zhu et al. 2019, arXiv 1906.08935).
- `cosine`: 1 - <a, b> / (||a|| ||b||) over the whole pytree flattened into one vector
  (Inverting Gradients, Geiping et al. 2020, arXiv 2003.14053).
- `layer_weighted_l2`: sum_l w_l ||a_l - b_l||^2 (DLF, Dimitrov et al. 2022).
- `tv_l1` / `tv_l2`: total variation priors on NHWC images.

All are pure, jit/vmap/grad-friendly and finite on all-zero inputs. The matching losses also
accept `leakjax.attacks.lowrank.LowRank` leaves (a dense-kernel gradient kept as its factors)
on either side.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from leakjax.attacks import lowrank
from leakjax.types import Array, PyTree

_TINY = 1e-12


def _leaves(tree: PyTree) -> list[Array]:
    return jax.tree.leaves(tree)


def sq_norm(tree: PyTree) -> Array:
    """Sum of squares of every element of a pytree."""
    return sum(lowrank.sq_norm(x) for x in _leaves(tree))


def dot(a: PyTree, b: PyTree) -> Array:
    """Inner product of two pytrees of the same structure."""
    return sum(lowrank.inner(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def l2(a: PyTree, b: PyTree) -> Array:
    """sum_l ||a_l - b_l||^2."""
    return sum(lowrank.sq_dist(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def cosine(a: PyTree, b: PyTree) -> Array:
    """1 - cos(a, b), both pytrees flattened into one vector.

    Invariant to positive rescaling of either side; symmetric; equals 1 (not NaN)
    when either side is all zeros (and its gradient is finite there).
    """
    na = sq_norm(a)
    nb = sq_norm(b)
    denom = jnp.sqrt(jnp.maximum(na, _TINY)) * jnp.sqrt(jnp.maximum(nb, _TINY))
    return 1.0 - dot(a, b) / denom


def layerwise_cosine(a: PyTree, b: PyTree) -> Array:
    """Mean over tensors of 1 - cos(a_l, b_l)."""
    terms = []
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        nx = jnp.sqrt(jnp.maximum(lowrank.sq_norm(x), _TINY))
        d = nx * jnp.sqrt(jnp.maximum(lowrank.sq_norm(y), _TINY))
        terms.append(1.0 - lowrank.inner(x, y) / d)
    return jnp.mean(jnp.stack(terms))


def layer_weighted_l2(a: PyTree, b: PyTree, weights: Sequence[float] | Array) -> Array:
    """sum_l w_l ||a_l - b_l||^2 with one weight per leaf (in `jax.tree.leaves` order)."""
    la, lb = _leaves(a), _leaves(b)
    if len(weights) != len(la):
        raise ValueError(f"layer_weighted_l2: {len(weights)} weights for {len(la)} tensors")
    return sum(w * lowrank.sq_dist(x, y) for w, x, y in zip(weights, la, lb, strict=True))


def exp_layer_weights(tree: PyTree, base: float = jnp.e) -> Array:
    """DLF's per-tensor weights: base^(L - l) for layer l = 0..L, normalised so w_0 = 1.

    Leaves are grouped into layers by their parent path (a kernel and its bias share one
    weight), in `jax.tree.leaves` order, which for flax modules follows the layer names.
    """
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    layer_ids, count, prev = [], -1, None
    for p in paths:  # consecutive leaves with the same parent module belong to one layer
        parent = tuple(str(k) for k in p[:-1])
        if parent != prev:
            count += 1
            prev = parent
        layer_ids.append(count)
    num_layers = count + 1
    w = jnp.asarray([base ** (num_layers - 1 - i) for i in layer_ids], jnp.float32)
    return w / w[0]


def tv_l1(x: Array) -> Array:
    """Mean absolute difference between neighbouring pixels (IG's TV), NHWC."""
    dx = jnp.mean(jnp.abs(x[:, :, 1:, :] - x[:, :, :-1, :]))
    dy = jnp.mean(jnp.abs(x[:, 1:, :, :] - x[:, :-1, :, :]))
    return dx + dy


def tv_l2(x: Array) -> Array:
    """Mean squared difference between neighbouring pixels (GRNN/DLF-style TV), NHWC."""
    dx = jnp.mean(jnp.square(x[:, :, 1:, :] - x[:, :, :-1, :]))
    dy = jnp.mean(jnp.square(x[:, 1:, :, :] - x[:, :-1, :, :]))
    return dx + dy


MATCHING = {"l2": l2, "cosine": cosine, "layerwise_cosine": layerwise_cosine}
PRIORS = {"tv_l1": tv_l1, "tv_l2": tv_l2}
