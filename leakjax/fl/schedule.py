"""The order and count of a FedAvg client's local steps.

`batch_schedule` is the one definition of the minibatches a client trains on (reshuffled every
epoch, the last partial batch kept, as torch's DataLoader); `local_steps` and
`momentum_weights` count and weigh its SGD steps for the analytic attacks and label
inference (`leakjax.labels.counts`, `leakjax.attacks.rtf`) that reason about the update
without running it; `sgd_weights` (momentum and weight decay) is the same bookkeeping for
the factored client (`leakjax.fl.factored`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from leakjax.types import Array, PRNGKey


def batch_schedule(
    mask: Array, key: PRNGKey | None, epochs: int, batch_size: int
) -> tuple[Array, Array]:
    """Indices and validity masks of every minibatch of the local training.

    Args:
      mask: [n_max] validity of the rows.
      key: PRNG key for the per-epoch shuffle, or None for a fixed order
        (real rows in their stored order, every epoch).
      epochs, batch_size: static.

    Returns:
      (idx [epochs * S, batch_size] int32, valid [epochs * S, batch_size] bool) with
      S = ceil(n_max / batch_size).
    """
    n_max = mask.shape[0]
    steps = math.ceil(n_max / batch_size)
    pad = steps * batch_size - n_max
    n = jnp.sum(mask.astype(jnp.int32))
    invalid = jnp.logical_not(mask.astype(bool))

    def one_epoch(k):
        if k is None:
            order = jnp.argsort(invalid, stable=True)
        else:
            # real rows first, in a random order; padding rows last.
            r = jax.random.uniform(k, (n_max,))
            order = jnp.lexsort((r, invalid))
        order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
        valid = jnp.arange(steps * batch_size) < n
        return order.reshape(steps, batch_size), valid.reshape(steps, batch_size)

    if key is None:
        idx, valid = one_epoch(None)
        idx = jnp.tile(idx, (epochs, 1))
        valid = jnp.tile(valid, (epochs, 1))
    else:
        idx, valid = jax.vmap(one_epoch)(jax.random.split(key, epochs))
        idx = idx.reshape(epochs * steps, batch_size)
        valid = valid.reshape(epochs * steps, batch_size)
    return idx.astype(jnp.int32), valid


def copies_schedule(epochs: int, n: int, batch_size: int) -> tuple[Array, Array]:
    """`batch_schedule` of a client whose epoch e trains, in stored order, on its own copy of
    the data: rows ``e * n .. e * n + n - 1`` of an [epochs * n, ...] array (DLF's dummies)."""
    idx, valid = batch_schedule(jnp.ones((n,), bool), None, 1, batch_size)
    offsets = (jnp.arange(epochs, dtype=jnp.int32) * n)[:, None, None]
    idx = (idx[None] + offsets).reshape((-1, batch_size))
    return idx, jnp.tile(valid, (epochs, 1))


def local_steps(num_samples: int, epochs: int, batch_size: int) -> int:
    """SGD steps of a client with ``num_samples`` rows: ``epochs * ceil(n / batch_size)``."""
    return int(epochs) * math.ceil(int(num_samples) / int(batch_size))


def momentum_weights(steps: int, momentum, xp=jnp):
    """w [steps]: the weight of step t's direction d_t in ``(theta_0 - theta_T) / lr``.

    With torch momentum (buf = mu * buf + d; theta -= lr * buf),
    ``theta_0 - theta_T = lr * sum_t w_t d_t`` and ``w_t = sum_{s=0}^{T-1-t} mu^s``.
    ``xp`` is ``jnp`` (traced momentum) or ``numpy`` (float64 on the host).
    """
    dtype = xp.float64 if xp is not jnp else jnp.float32
    powers = xp.asarray(momentum, dtype) ** xp.arange(steps, dtype=dtype)
    return xp.cumsum(powers)[::-1]


def sgd_weights(steps: int, lr, momentum, weight_decay, xp=jnp):
    """(alpha [steps + 1], coef [steps + 1, steps]): a parameter after s local steps, in terms
    of its start and the steps' gradients.

    With torch's SGD (d_t = G_t + wd * theta_t; buf_t = mu * buf_{t-1} + d_t, buf_{-1} = 0;
    theta_{t+1} = theta_t - lr * buf_t) every iterate is linear in theta_0 and G_0..G_{s-1}:
    ``theta_s = alpha[s] * theta_0 + sum_t coef[s, t] * G_t`` (``coef[s, t] = 0`` for t >= s).
    Without weight decay ``alpha = 1`` and ``coef[steps] = -lr * momentum_weights(steps, mu)``.
    ``xp`` is ``jnp`` (traced hyperparameters, float32) or ``numpy`` (float64 on the host).
    """
    dtype = xp.float64 if xp is not jnp else jnp.float32
    lr, mu, wd = (xp.asarray(v, dtype) for v in (lr, momentum, weight_decay))
    eye = xp.eye(steps, dtype=dtype)
    alpha, coef = [xp.ones((), dtype)], [xp.zeros((steps,), dtype)]
    beta, buf = xp.zeros((), dtype), xp.zeros((steps,), dtype)  # the momentum buffer, alike
    for s in range(steps):
        beta = mu * beta + wd * alpha[s]
        buf = mu * buf + wd * coef[s] + eye[s]
        alpha.append(alpha[s] - lr * beta)
        coef.append(coef[s] - lr * buf)
    return xp.stack(alpha), xp.stack(coef)
