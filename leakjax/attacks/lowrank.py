"""Gradients whose big dense kernels stay factored: ``dL/dW = a^T d`` without forming it.

A dense layer ``y = a @ W + b`` fed ``r`` rows has the kernel gradient ``a^T @ d`` (``a``:
its ``[r, in]`` input, ``d = dL/dy``: ``[r, out]``), a matrix of rank at most ``r``. Gradient
matching against one small batch (DLG, iDLG, Inverting Gradients, GRNN, GGL in 'gradient'
mode) therefore does not need the ``in x out`` matrix: every quantity the matching losses
use is a sum over kernels of

- ``||a^T d||^2 = sum((a a^T) * (d d^T))`` (two ``r x r`` Gram matrices),
- ``<a^T d, T> = sum(d * (a @ T))`` (one pass over the observed ``T``),

so the objective and its gradient cost ``O(r (in + out))`` plus one read of ``T`` per term,
instead of writing, reading and differentiating through an ``in x out`` product (the CIFAR
cnn's ``fc1`` is 16384 x 512 = 8.4M floats; forming its gradient was 80% of a DLG step on CPU,
BUILD_NOTES "Where the time goes").

`factored_gradient` returns the parameter gradient as `leakjax.fl.gradient` does, with the
kernels worth factoring replaced by `LowRank` leaves (plain Python objects, so `jax.tree`
functions see them as leaves and they never cross a jit/vmap boundary: they live inside one
objective); `leakjax.attacks.losses` accepts them on either side. Its values agree with the
dense gradient to float32 rounding, except that ``||G - T||^2`` is computed as
``||G||^2 - 2 <G, T> + ||T||^2``, which loses relative precision ``~1e-7 ||T||^2 / ||G - T||^2``
once the match is very close (the loss is not exactly 0 at the truth; tests compare with
tolerances). Attacks switch it off with ``attack.factored='off'``.

The dense layers are found with `flax.linen.intercept_methods` (every ``nn.Dense`` called once
per forward pass on 2-D inputs); their outputs get a zero "probe" whose gradient is ``d``,
and their kernels are held constant, so autodiff never forms ``a^T d``. The loss is
`leakjax.fl.client.loss_and_state`, the one the simulated and real clients train with.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from leakjax.fl.client import gradient, loss_and_state
from leakjax.fl.factored import dense_calls, is_dense_call, worth_factoring
from leakjax.types import Array


@dataclasses.dataclass(frozen=True)
class LowRank:
    """The matrix ``a^T @ d`` (``[in, out]``) kept as its factors ``a [r, in]``, ``d [r, out]``.

    Multiplying by a scalar scales ``d`` (so ``jax.tree.map(lambda u: u * s, tree)`` works).
    """

    a: Array
    d: Array

    @property
    def shape(self) -> tuple[int, int]:
        return (self.a.shape[-1], self.d.shape[-1])

    def dense(self) -> Array:
        """The ``[in, out]`` matrix itself."""
        return self.a.T @ self.d

    def __mul__(self, s) -> LowRank:
        return LowRank(self.a, self.d * s)

    __rmul__ = __mul__

    def __neg__(self) -> LowRank:
        return LowRank(self.a, -self.d)


def sq_norm(x) -> Array:
    """``||x||_F^2`` of a dense array or a `LowRank`."""
    if isinstance(x, LowRank):
        return jnp.sum((x.a @ x.a.T) * (x.d @ x.d.T))
    return jnp.sum(jnp.square(x))


def inner(x, y) -> Array:
    """``<x, y>`` (sum of elementwise products); either may be a `LowRank`."""
    if isinstance(x, LowRank) and isinstance(y, LowRank):
        return jnp.sum((x.a @ y.a.T) * (x.d @ y.d.T))
    if isinstance(y, LowRank):
        x, y = y, x
    if isinstance(x, LowRank):
        return jnp.sum(x.d * (x.a @ y))
    return jnp.sum(x * y)


def sq_dist(x, y) -> Array:
    """``||x - y||_F^2``; either may be a `LowRank` (then expanded, see the module doc)."""
    if isinstance(x, LowRank) or isinstance(y, LowRank):
        return sq_norm(x) - 2.0 * inner(x, y) + sq_norm(y)
    return jnp.sum(jnp.square(x - y))


def densify(tree):
    """``tree`` with every `LowRank` leaf replaced by its dense matrix."""
    return jax.tree.map(lambda u: u.dense() if isinstance(u, LowRank) else u, tree)


def factored_gradient(apply, variables, x: Array, y: Array, mask=None, *, train: bool = False):
    """`leakjax.fl.gradient` with big, low-rank dense-kernel gradients as `LowRank` leaves.

    Args:
      apply: ``model.apply``.
      variables: the model's variables (``params`` and any other collections).
      x: inputs ``[B, ...]``; y: int ``[B]`` or soft ``[B, C]`` labels; mask: row validity.
      train: BatchNorm in training mode.

    Returns:
      The gradient pytree of ``variables['params']``: a dense array per leaf, except the
      ``kernel`` of every Dense whose rank-``B`` form is much smaller
      (`leakjax.fl.factored.worth_factoring`), which is a `LowRank`. Differentiable
      w.r.t. ``x`` and ``y`` like the dense gradient.
    """
    params = variables["params"]
    flat = traverse_util.flatten_dict(params)
    chosen = {
        path: shape
        for path, shape in dense_calls(apply, variables, x, mask, train).items()
        if path + ("kernel",) in flat and worth_factoring(*shape)
    }
    if not chosen:
        return gradient(apply, variables, x, y, mask, train=train)
    fixed = {path + ("kernel",): flat[path + ("kernel",)] for path in chosen}
    rest = {k: v for k, v in flat.items() if k not in fixed}
    probes = {path: jnp.zeros((r, fout), x.dtype) for path, (r, _, fout) in chosen.items()}

    def objective(rest, probes):
        inputs = {}

        def tap(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            path = tuple(context.module.path) if is_dense_call(context) else None
            if path in probes:
                inputs[path] = args[0]
                out = out + probes[path]
            return out

        full = traverse_util.unflatten_dict({**rest, **fixed})
        with nn.intercept_methods(tap):
            loss, _ = loss_and_state(apply, full, variables, x, y, mask, train)
        return loss, inputs

    (g_rest, g_probes), inputs = jax.grad(objective, argnums=(0, 1), has_aux=True)(rest, probes)
    out = dict(g_rest)
    for path in chosen:
        out[path + ("kernel",)] = LowRank(inputs[path], g_probes[path])
    return traverse_util.unflatten_dict(out)
