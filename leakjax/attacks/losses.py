"""Gradient-matching losses over parameter pytrees, and image priors.

- `l2`: sum over tensors of ||a - b||^2 (DLG, Zhu et al. 2019, arXiv 1906.08935).
- `cosine`: 1 - <a, b> / (||a|| ||b||) over the whole pytree flattened into one vector
  (Inverting Gradients, Geiping et al. 2020, arXiv 2003.14053).
- `layer_weighted_l2`: sum_l w_l ||a_l - b_l||^2 (DLF, Dimitrov et al. 2022).
- `tv_l1` / `tv_l2`: total variation priors on NHWC images.
- FedLeak's two options (Fan, Wang, Chen, Zhou, USENIX Security 2025, "Boosting Gradient
  Leakage Attacks", arXiv:2506.08435), for any of the matching losses: *partial gradient
  matching* (`selection` / `select`: only chosen tensors, and in each the top fraction of
  coordinates by the observed update's magnitude, are matched; the rest contribute nothing)
  and a *gradient regularization* (`grad_penalty`, the selected simulated update's squared
  norm relative to the observed one's) with its weight. `MatchOptions` holds their settings;
  `fedleak_match` builds the matching term of an attack from them.

All are pure, jit/vmap/grad-friendly and finite on all-zero inputs. The matching losses also
accept `leakjax.attacks.lowrank.LowRank` leaves (a dense-kernel gradient kept as its factors)
on either side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from leakjax.attacks import lowrank
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError, PyTree

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


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaf_paths(tree: PyTree) -> list[str]:
    """'/'-joined key path of every leaf, in `jax.tree.leaves` order (e.g. 'Conv_0/kernel')."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ["/".join(_key_name(k) for k in p) for p, _ in flat]


def _top_fraction_mask(u, fraction: float) -> Array:
    """1.0 on the ceil(fraction * size) coordinates of largest |u| (ties kept), else 0.0."""
    a = jnp.abs(lowrank.densify(u))
    k = max(1, math.ceil(fraction * a.size))
    threshold = jax.lax.top_k(a.reshape(-1), k)[0][k - 1]
    return (a >= threshold).astype(a.dtype)


def selection(observed: PyTree, layers: Sequence[str] = (), fraction: float = 1.0):
    """FedLeak's partial matching, per leaf of ``observed``: None (matched whole), False
    (not matched), or a 0/1 mask of its top ``fraction`` coordinates by |observed|.

    Args:
      observed: the observed update (or gradient) pytree.
      layers: '/'-joined path prefixes (`leaf_paths`) of the tensors to match; () (or '')
        matches every tensor.
      fraction: in (0, 1]; 1 keeps every coordinate of a matched tensor.

    Returns:
      A list aligned with ``jax.tree.leaves(observed)``, or None when everything is matched
      (then `select` is the identity and the objective is the plain one).

    Raises:
      ConfigError: a prefix of ``layers`` names no tensor (one line listing the paths).
    """
    layers = tuple(layers)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"attack.match_fraction must be in (0, 1], got {fraction!r}")
    every = not layers or "" in layers
    if every and fraction == 1.0:
        return None
    paths = leaf_paths(observed)
    for prefix in layers:
        if not any(p.startswith(prefix) for p in paths):
            raise ConfigError(
                f"attack.match_layers={layers!r}: {prefix!r} names no parameter "
                f"(parameters: {', '.join(paths)})"
            )
    out = []
    for p, u in zip(paths, _leaves(observed), strict=True):
        if not (every or any(p.startswith(prefix) for prefix in layers)):
            out.append(False)
        elif fraction == 1.0:
            out.append(None)
        else:
            out.append(_top_fraction_mask(u, fraction))
    return out


def select(tree: PyTree, sel) -> PyTree:
    """``tree`` restricted to a `selection`: unmatched leaves become a scalar 0 (so every
    matching loss, including `layer_weighted_l2` with its per-leaf weights, gets nothing from
    them), masked leaves are multiplied by their mask (a `LowRank` leaf is densified first)."""
    if sel is None:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    out = []
    for u, s in zip(leaves, sel, strict=True):
        if s is None:
            out.append(u)
        elif s is False:
            out.append(jnp.zeros((), jnp.float32))
        else:
            out.append(lowrank.densify(u) * s)
    return jax.tree.unflatten(treedef, out)


def grad_penalty(simulated: PyTree, observed: PyTree) -> Array:
    """FedLeak-style gradient regularization: ||simulated||^2 / ||observed||^2 (the dummies'
    simulated update kept small, relative to the observed one so that its weight is scale-free;
    smooth everywhere, 0 at a zero update)."""
    return sq_norm(simulated) / jnp.maximum(sq_norm(observed), _TINY)


@dataclasses.dataclass(frozen=True)
class MatchOptions(Checked):
    """FedLeak's options of a gradient-matching attack (base of its settings dataclass).

    Attributes:
      match_layers: '/'-joined parameter path prefixes (e.g. 'Conv_0', 'Dense_1/kernel') of the
        tensors matched; () or ('',): all (today's objective).
      match_fraction: in (0, 1]: in each matched tensor only the top fraction of coordinates by
        |observed update| is matched (1: all).
      grad_reg: weight of `grad_penalty` on the selected simulated update (0: none). Traced.
    """

    match_layers: tuple[str, ...] = ()
    match_fraction: float = setting(1.0, low=0, low_open=True, high=1)
    grad_reg: float = setting(0.0, low=0)


def fedleak_match(
    match: Callable[[PyTree, PyTree], Array],
    observed: PyTree,
    options: MatchOptions,
    weight: Array,
    traced: bool,
) -> Callable[[PyTree], Array]:
    """An attack's matching term with `MatchOptions`: ``simulated -> match(S(sim), S(obs)) +
    weight * grad_penalty(S(sim), S(obs))`` with ``S`` the `selection` of ``observed``.

    With the defaults (everything selected, ``grad_reg`` 0 and not ``traced``) this is
    ``match(sim, observed)`` itself, the same computation bit for bit. ``weight`` is the
    (possibly traced) ``grad_reg``; ``traced``: it may be nonzero whatever the setting.
    """
    sel = selection(observed, options.match_layers, options.match_fraction)
    obs = select(observed, sel)
    regularized = traced or options.grad_reg != 0

    def term(simulated: PyTree) -> Array:
        sim = select(simulated, sel)
        out = match(sim, obs)
        if regularized:
            out = out + weight * grad_penalty(sim, obs)
        return out

    return term


MATCHING = {"l2": l2, "cosine": cosine, "layerwise_cosine": layerwise_cosine}
PRIORS = {"tv_l1": tv_l1, "tv_l2": tv_l2}
