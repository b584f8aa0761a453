"""Batch label counts from the last layer's averaged gradient (Geng et al. 2021,
"Towards General Deep Leakage in Federated Learning", https://arxiv.org/abs/2110.09074).

For a mean cross-entropy over N samples the head's bias gradient is
``db_c = mean_i p_ic - n_c / N``, so ``n_c = N (mean_i p_ic - db_c)``: exact when the
mean softmax output over the client's batch is known. Geng et al. estimate it from the
model's outputs on dummy inputs at the observed weights. Without a bias they use the
kernel gradient summed over its input dimension,
``sum_f dW_fc = mean_i O_i (p_ic - y_ic)`` with ``O_i = sum_f h_if``, approximating
every O_i by the mean O over the dummy inputs:
``n_c = N (mean(O p_c) - sum_f dW_fc) / mean(O)`` (Geng's ``K p_c - K dW_c / O``, with
the product term estimated jointly rather than as a product of means).

FedAvg mode: the update / (lr * sum_t w_t) is treated as one averaged gradient at the
global weights (w_t: the momentum weights of `counts.step_weights`, 1 without
momentum; weight decay is removed at the global weights). This ignores how the model
moves during local training: `dimitrov` and `rlu` model that.

When the theory makes this exact: a single gradient (gradient mode), bias read, and a
mean softmax on the dummy inputs within 0.5 / N of the batch's (e.g. an untrained
model whose softmax is near uniform on any input).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.labels import counts as C


@functools.partial(jax.jit, static_argnums=(0,))
def _moments(model, variables, x):
    h, p = C.head_stats(model, variables, x)
    o = jnp.sum(h, axis=-1)
    return jnp.mean(p, axis=0), jnp.mean(o), jnp.mean(o[:, None] * p, axis=0)


def geng_counts(
    obs, model, *, key=None, aux=None, use: str = "auto", num_inputs: int = 64
) -> np.ndarray:
    """Real-valued per-class counts [C] (sum ~ N; round with `counts.round_counts`).

    Args:
      obs: `Observation` (gradient or fedavg mode).
      model: `leakjax.models.Model`.
      key: PRNG key for the dummy inputs (default key 0).
      aux: optional auxiliary images (normalized [M, H, W, C], or an (images, labels)
        pair) used instead of random inputs.
      use: 'auto' (bias if the head has one), 'bias' or 'kernel'.
      num_inputs: number of random dummy inputs.
    """
    n = int(obs.num_samples)
    upd = C.head_of(obs.update)
    src = C.resolve_use(upd, use)
    lr, wd = C.learning_rate(obs), C.weight_decay(obs)
    w_sum = float(np.sum(C.step_weights(obs)))
    theta0 = C.head_of(obs.variables["params"])
    x = _inputs(aux, key, num_inputs, model.input_shape)
    p_mean, o_mean, op_mean = (np.asarray(a, np.float64) for a in _moments(model, obs.variables, x))
    if src == "bias":
        g = (upd["bias"] / lr - wd * w_sum * theta0["bias"]) / w_sum
        return n * (p_mean - g)
    g = (upd["kernel"] / lr - wd * w_sum * theta0["kernel"]) / w_sum
    return n * (op_mean - g.sum(axis=0)) / o_mean


def _inputs(aux, key, num, shape):
    if aux is not None:
        return jnp.asarray(aux[0] if isinstance(aux, tuple | list) else aux, jnp.float32)
    key = jax.random.key(0) if key is None else key
    return C.random_inputs(key, num, shape)
