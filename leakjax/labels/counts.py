"""Shared pieces of the label-count methods (Geng, Dimitrov, RLU).

Every count method reads the last layer ('head', a Dense with kernel [F, C] and
optionally a bias [C]) of the observed update. For a mean cross-entropy over a batch,
that layer's gradient is

    d bias_c   = mean_i (p_ic - y_ic)
    d kernel_c = mean_i h_i (p_ic - y_ic)

with p_i the softmax output and h_i the head's input (the penultimate features). A
FedAvg update (params_before - params_after) of T SGD steps with torch momentum mu and
weight decay wd is ``lr * sum_t w_t (g_t + wd * theta_t)`` with
``w_t = (1 - mu^(T - t)) / (1 - mu)`` (`step_weights`), so it is a weighted sum of
such gradients. The methods differ in how they estimate the softmax outputs and the
features at the (unobserved) intermediate weights.

Helpers here: the step weights, the penultimate statistics of a batch of inputs,
random inputs standing in for the client's data, the largest-remainder rounding of
real-valued counts, and counts -> class-sorted labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.fl.schedule import local_steps, momentum_weights
from leakjax.labels.idlg import head_update
from leakjax.types import ConfigError, NumericalError

#: which part of the head a count method reads: 'auto' (the bias when the head has one,
#: else the kernel summed over its input dimension), 'bias' or 'kernel'.
USES = ("auto", "bias", "kernel")


def num_steps(obs) -> tuple[int, int]:
    """(steps per epoch, total SGD steps) of the observed update (1, 1 for a gradient)."""
    if obs.mode == "gradient":
        return 1, 1
    per_epoch = local_steps(obs.num_samples, 1, obs.hp.batch_size)
    return per_epoch, local_steps(obs.num_samples, obs.hp.epochs, obs.hp.batch_size)


def step_weights(obs) -> np.ndarray:
    """w_t [T] (float64): the weight of step t's gradient in update / lr
    (`leakjax.fl.momentum_weights`; ones for a gradient)."""
    if obs.mode == "gradient":
        return np.ones((1,), np.float64)
    _, total = num_steps(obs)
    return momentum_weights(total, float(np.asarray(obs.hp.momentum)), xp=np)


def learning_rate(obs) -> float:
    """The client's learning rate of that round (1 for a gradient observation)."""
    if obs.mode == "gradient":
        return 1.0
    lr = float(np.asarray(obs.hp.lr))
    if not lr > 0:
        raise ConfigError(f"label inference needs fl.lr > 0, got {lr}")
    return lr


def weight_decay(obs) -> float:
    return 0.0 if obs.mode == "gradient" else float(np.asarray(obs.hp.weight_decay))


def resolve_use(head: dict, use: str) -> str:
    """'bias' or 'kernel' for ``use`` in USES, given the head's update."""
    if use not in USES:
        raise ConfigError(f"label counts: use={use!r} is not one of {USES}")
    if use == "auto":
        return "bias" if "bias" in head else "kernel"
    if use not in head:
        raise ConfigError(f"label counts from the head's {use!r}, but the head has no {use}")
    return use


def head_of(tree) -> dict:
    """The 'head' entry of a params pytree, as host float64 arrays."""
    return {k: np.asarray(v, np.float64) for k, v in head_update(tree).items()}


def head_stats(model, variables, x):
    """Penultimate features h [M, F] and softmax outputs p [M, C] at ``variables``.

    The logits are recomputed from h with the head's kernel and bias, so one
    `Model.features` pass gives both.
    """
    h = model.features(variables, x)
    head = variables["params"]["head"]
    logits = h @ head["kernel"]
    if "bias" in head:
        logits = logits + head["bias"]
    return h, jax.nn.softmax(logits, axis=-1)


def with_params(variables, params, batch_stats=None):
    """``variables`` with its params (and batch statistics, if given) replaced."""
    v = dict(variables)
    v["params"] = params
    if batch_stats is not None:
        v["batch_stats"] = batch_stats
    return v


def interpolate(a, b, t):
    """(1 - t) * a + t * b, leafwise (None stays None)."""
    if a is None or b is None:
        return a
    return jax.tree.map(lambda x, y: (1.0 - t) * x + t * y, a, b)


def random_inputs(key, num: int, shape) -> jax.Array:
    """``num`` random inputs standing in for normalized images [num, *shape].

    Half are i.i.d. N(0, 1) pixels; half are smooth images (Gaussian noise at 1/4 of
    the resolution, bilinearly upsampled, with a random per-image offset, rescaled to
    unit variance per pixel) whose spatial correlations resemble natural images more.
    Normalized data sets have about zero mean and unit variance per channel, so both
    kinds live in the right range.
    """
    shape = tuple(int(s) for s in shape)
    k1, k2, k3 = jax.random.split(key, 3)
    n_smooth = num // 2
    white = jax.random.normal(k1, (num - n_smooth,) + shape)
    if n_smooth == 0:
        return white
    h, w, c = shape
    low = jax.random.normal(k2, (n_smooth, max(1, h // 4), max(1, w // 4), c))
    up = jax.image.resize(low, (n_smooth, h, w, c), "bilinear")
    up = up / jnp.maximum(jnp.std(up), 1e-6) * jnp.sqrt(0.75)
    up = up + 0.5 * jax.random.normal(k3, (n_smooth, 1, 1, c))
    return jnp.concatenate([white, up], axis=0)


def round_counts(raw, total: int) -> np.ndarray:
    """Non-negative integer counts summing to ``total`` (largest-remainder rule).

    Negative estimates are clipped to 0; the rest are rescaled to sum to ``total``
    (Hamilton's method: floors of the quotas, then one more for the largest
    remainders, ties to the lower class index). All-zero estimates give a uniform
    split.

    Args:
      raw: real-valued counts [C].
      total: the number of samples N.

    Returns:
      int64 [C], sum == total.
    """
    raw = np.asarray(raw, np.float64).reshape(-1)
    if not np.all(np.isfinite(raw)):
        raise NumericalError(f"label counts are not finite: {raw}")
    c = np.maximum(raw, 0.0)
    if c.sum() <= 0:
        c = np.ones_like(c)
    quota = c * (total / c.sum())
    base = np.floor(quota + 1e-9).astype(np.int64)
    base = np.minimum(base, total)
    rem = int(total - base.sum())
    frac = quota - base
    if rem > 0:
        order = np.argsort(-frac, kind="stable")
        base[order[:rem]] += 1
    elif rem < 0:  # only possible through the 1e-9 guard; take from the smallest remainders
        order = np.argsort(frac, kind="stable")
        order = [i for i in order if base[i] > 0]
        base[order[:-rem]] -= 1
    return base


def counts_to_labels(counts) -> np.ndarray:
    """Class-sorted int32 labels with the given per-class counts."""
    counts = np.asarray(counts, np.int64)
    return np.repeat(np.arange(counts.shape[0], dtype=np.int32), counts)


def lstsq_counts(a: np.ndarray, b: np.ndarray, total: int, sum_weight: float = 1e3):
    """Counts n >= 0 minimizing ||a n - b||^2 with sum(n) = total (a penalty row).

    Args:
      a: [R, C] design matrix; b: [R] right-hand side; total: N.
      sum_weight: weight of the row ``sum(n) = N`` relative to a unit-norm system.

    Returns:
      float64 [C] real-valued counts (round with `round_counts`).
    """
    from scipy.optimize import nnls

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), 1e-30)
    a, b = a / scale, b / scale
    row = np.full((1, a.shape[1]), sum_weight / max(total, 1))
    a_aug = np.concatenate([a, row], axis=0)
    b_aug = np.concatenate([b, [sum_weight]])
    n, _ = nnls(a_aug, b_aug, maxiter=50 * a.shape[1])
    return n
