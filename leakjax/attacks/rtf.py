"""Robbing the Fed (RTF): closed-form recovery of images from an imprint block's update.

Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining Private Data in
Federated Learning with Modified Models", ICLR 2022, https://arxiv.org/abs/2110.13057; the
analytic attack of Zhu, Huang, Xie, arXiv 2409.19301 (Sec. III, Eq. 31; Sec. IV-E to IV-I).

The model must carry the imprint block of :mod:`leakjax.models.imprint` (``params['imprint']``,
``model.imprint_bins > 0`` in a config). Bin ``i`` of ``linear0`` fires for the images whose
brightness ``h(x)`` exceeds ``c_i``, and the loss gradient reaching bin ``i`` from image ``j``
is the same number ``g_j`` for every bin the image fires (all rows of both linear layers are
identical), so with a batch of ``B`` images

    dW_i = (1/B) sum_{j: h_j > c_i} g_j x_j,    db_i = (1/B) sum_{j: h_j > c_i} g_j,

and for consecutive bins ``(dW_i - dW_{i+1}) / (db_i - db_{i+1}) = x_j`` exactly when a single
image ``j`` has ``c_i < h_j <= c_{i+1}`` (a weighted mean of the images when several do, and
``0 / 0`` when none does). :func:`recover` computes all ``bins - 1`` ratios at once (no loop over
bins), keeps the rows whose bias difference is non-zero (above ``tol`` times the largest one),
drops non-finite rows and near-duplicates of an earlier kept row, clamps to the valid pixel box
and puts the kept rows first; the others are zeros (finite), so the output always has
``bins - 1`` candidates and evaluation matches them to the truth (Hungarian, M != N).

Modes:

- ``gradient``: the update is the gradient itself.
- ``fedavg``: the update is ``params_before - params_after`` of the client's whole local
  training. After one SGD step it is ``lr * gradient`` (plus ``lr * wd * params``; the known
  weight-decay part is subtracted when ``decay_correction``), and ``lr`` cancels in the ratio:
  recovery is as exact as in gradient mode. With several steps (minibatches, epochs) the update
  is the sum of the steps' gradients, taken at moving weights: after the first step the rows of
  ``linear0`` and ``linear1`` are no longer identical, so (i) the thresholds drift (an image
  can change bins between steps), (ii) ``g_j`` differs between bins and the terms of images
  active in both bins stop cancelling, and (iii) images of *different* minibatches that fall
  in the same bin are summed (with their steps' weights) into one mixed row. Images alone in
  their bin over the whole training are still read out exactly (their ``sum_t g_jt x_j`` over
  ``sum_t g_jt`` is ``x_j``); the others come out as blends. More local data, more bins'
  collisions; more steps (and larger ``lr / gain``), more drift (tests/test_rtf.py measures
  the rate at batch 50, 5 epochs).

`make` returns an :class:`~leakjax.attacks.base.Attack` whose ``init`` computes the closed form
and whose ``step`` does nothing (loss 0), so ``attacks.run(..., steps=1)`` and the experiment
runner treat it like any attack. A non-finite observation (the plain cnn behind the block can
diverge during local training, Sec. IV-I and Fig. 46) gives loss NaN at step 0, so the run marks
the trial failed, and zero (finite) images.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from leakjax.attacks.base import Attack, closed_form
from leakjax.attacks.registry import AttackSpec, register
from leakjax.fl.schedule import local_steps, momentum_weights
from leakjax.models.imprint import imprint_params
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError


@dataclasses.dataclass(frozen=True)
class RTFConfig(Checked):
    """Settings of the closed-form read-out.

    Attributes:
      tol: a bin pair is used when ``|db_i - db_{i+1}| > tol * max_k |db_k - db_{k+1}|``
        (removes empty bin pairs, whose difference is 0 up to float rounding).
      dedup: drop a row whose mean squared difference to an earlier kept row is below
        ``dedup`` times their mean power (0 disables).
      decay_correction: fedavg mode: subtract the client's known weight-decay contribution
        (exact for one step; for K steps with momentum m it assumes the weights stay put).
      clamp: clamp the rows to the valid pixel box (as the reference does).
    """

    tol: float = setting(1e-6, low=0, key="rtf_tol")
    dedup: float = setting(1e-4, low=0, key="rtf_dedup")
    decay_correction: bool = setting(True, key="rtf_decay_correction")
    clamp: bool = setting(True, key="rtf_clamp")


@struct.dataclass
class RTFState:
    images: Array  # [bins - 1, H, W, C], normalized; kept rows first, zeros after
    valid: Array  # [bins - 1] bool
    finite: Array  # the observation was finite


def check_config(cfg: RTFConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def requires(config) -> None:
    """RTF reads images out of the imprint block: the config must put one in the model."""
    if not config.model.get("imprint_bins", 0):
        raise ConfigError("attack.name='rtf' needs model.imprint_bins > 0 (RTF's imprint block)")


def _decay_multiplier(hp, num_samples: int) -> Array:
    """``lr * wd * sum_t w_t``: what the client's K local SGD steps (momentum weights w_t,
    `leakjax.fl.momentum_weights`) add to ``before - after`` from weight decay on (constant)
    weights."""
    k = local_steps(num_samples, hp.epochs, hp.batch_size)
    total = jnp.sum(momentum_weights(k, hp.momentum))
    return jnp.asarray(hp.lr, jnp.float32) * jnp.asarray(hp.weight_decay, jnp.float32) * total


def _finite(x: Array, axis=None) -> Array:
    # max |x| is NaN/Inf iff some entry is; compiles much faster on XLA:CPU than all(isfinite).
    return jnp.isfinite(jnp.max(jnp.abs(x), axis=axis))


def recover(obs, input_shape, box, cfg: RTFConfig = RTFConfig()) -> tuple[Array, Array, Array]:
    """All ``bins - 1`` consecutive-bin read-outs of one observation (pure, jit/vmap-able).

    Args:
      obs: an `Observation` of an imprinted model ('gradient' or 'fedavg').
      input_shape: ``(H, W, C)`` of one image.
      box: ``(lo, hi)`` per-channel bounds of valid normalized pixels.
      cfg: RTFConfig.

    Returns:
      ``(images [bins - 1, H, W, C], valid [bins - 1] bool, finite [] bool)``: kept rows first
      (in increasing brightness), zeros in the other rows; ``finite`` says whether the
      observed imprint update was finite.
    """
    upd = imprint_params(obs.update)["linear0"]
    # The barrier keeps XLA from constant-folding the whole read-out at compile time when the
    # observation is a closed-over host array (a single, unbatched run).
    dw, db = jax.lax.optimization_barrier(
        (jnp.asarray(upd["kernel"], jnp.float32).T, jnp.asarray(upd["bias"], jnp.float32))
    )  # [bins, N], [bins]
    n = math.prod(input_shape)
    if dw.shape[1] != n:
        raise ConfigError(
            f"imprint block measures {dw.shape[1]} pixels but the model input has {n}"
        )
    if obs.mode == "fedavg" and cfg.decay_correction:
        before = imprint_params(obs.variables["params"])["linear0"]
        w0, b0 = jax.lax.optimization_barrier(
            (jnp.asarray(before["kernel"], jnp.float32).T, jnp.asarray(before["bias"], jnp.float32))
        )
        mult = _decay_multiplier(obs.hp, obs.num_samples)
        dw = dw - mult * w0
        db = db - mult * b0
    finite = _finite(dw) & _finite(db)
    ddw = dw[:-1] - dw[1:]
    ddb = db[:-1] - db[1:]
    mag = jnp.abs(jnp.where(jnp.isfinite(ddb), ddb, 0.0))
    valid = (mag > cfg.tol * jnp.max(mag)) & (mag > 0) & finite
    rows = ddw / jnp.where(valid, ddb, 1.0)[:, None]
    valid = valid & _finite(rows, axis=1)
    rows = jnp.where(valid[:, None], rows, 0.0)
    x = rows.reshape((-1,) + tuple(input_shape))
    if cfg.clamp:
        lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
        x = jnp.clip(x, lo, hi)
    if cfg.dedup > 0:
        flat = x.reshape(x.shape[0], -1)
        power = jnp.mean(flat * flat, axis=1)
        sq = power[:, None] + power[None, :] - 2.0 * (flat @ flat.T) / flat.shape[1]
        close = jnp.maximum(sq, 0.0) <= cfg.dedup * 0.5 * (power[:, None] + power[None, :])
        earlier = jnp.tril(jnp.ones(close.shape, bool), k=-1)  # j < i
        dup = jnp.any(close & earlier & valid[None, :], axis=1)
        valid = valid & ~dup
    x = jnp.where(valid[:, None, None, None], x, 0.0)
    order = jnp.argsort(~valid, stable=True)
    return x[order], valid[order], finite


def make(obs, model, cfg: RTFConfig = RTFConfig(), *, steps: int = 1, box, labels=None) -> Attack:
    """Robbing the Fed against one observation of an imprinted model.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg').
      model: the imprinted `leakjax.models.Model` (`leakjax.models.imprint.wrap`).
      cfg: RTFConfig.
      steps: unused (the attack is closed form; run it with ``steps=1``).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: unused (RTF needs no labels).

    Returns:
      An `Attack`: ``init`` computes :func:`recover`, ``step`` is a no-op with loss 0 (NaN if
      the observation was not finite), ``result`` gives ``bins - 1`` candidate images.
    """
    del steps, labels
    check_config(cfg, obs.mode)
    imprint_params(obs.update)  # fail early, outside jit, when there is no imprint block
    shape = tuple(model.input_shape)

    def solve(key):
        del key
        images, valid, finite = recover(obs, shape, box, cfg)
        return RTFState(images=images, valid=valid, finite=finite)

    return closed_form(solve, lambda state: {"num_valid": jnp.sum(state.valid)})


SPEC = register(
    AttackSpec(
        name="rtf",
        modes=("gradient", "fedavg"),
        make=make,
        settings=RTFConfig,
        check=check_config,
        requires=requires,
        kind="analytic",
        paper="Fowl et al. 2022, Robbing the Fed, ICLR, arXiv:2110.13057",
        example=(("model.imprint_bins", 16),),
    )
)
