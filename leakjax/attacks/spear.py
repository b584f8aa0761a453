"""SPEAR: exact recovery of a batch from the gradient of a Dense layer followed by ReLU.

Dimitrov, Mueller, Fischer, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated
Learning", NeurIPS 2024, https://arxiv.org/abs/2403.03945 (Sec. 3-4).

For the first Dense of fc2/mlp (``"fc1"``: ``Z = X K + c``, then ReLU) and a batch of ``b``
inputs ``X [b, n]``, the observed gradients are ``dW = K_grad^T = G^T X [m, n]`` and
``db = G^T 1 [m]`` with ``G = dL/dZ [b, m]``. So

1. ``dW`` has rank ``b``: its SVD gives ``dW = L R`` (``L = U_b S_b [m, b]``, ``R = V_b^T
   [b, n]``), and ``G^T = L Q``, ``X = Q^{-1} R`` for one unknown ``Q [b, b]``.
2. ReLU makes ``G`` sparse: ``G[j, i] = 0`` wherever unit ``i`` is inactive for input ``j``
   (about half the units). If ``b - 1`` sampled rows ``S`` of ``L`` are all inactive for ``j``,
   ``q_j`` (column ``j`` of ``Q``, up to scale) spans the null space of ``L[S]``. Each sample
   solves one such ``(b-1) x b`` null space (a complete QR), all of a chunk at once (``vmap``).
3. A sample is *sparse-consistent* when ``L q`` has at least ``min_zeros`` entries below
   ``tol * max |L q|``: a correct direction has the input's whole inactive set as zeros, a wrong
   one only the ``b - 1`` forced ones.
4. Greedy selection: each chunk's consistent candidates that are not parallel to a direction
   already kept (``|cos| < 1 - dup``) are added, one by one, to a pool of ``b`` directions;
   chunks are drawn until the pool is full or ``samples`` are spent (``lax.while_loop``).
5. The scales come from the bias gradient: ``Q 1 = L^+ db``, so with unit columns ``Q_hat``,
   ``Q = Q_hat diag(Q_hat^{-1} L^+ db)`` (sign included), and ``X = Q^{-1} R``.

Each direction needs ``b - 1`` rows from its input's inactive set: about ``2^{-(b-1)}`` of the
samples, so the work grows exponentially in ``b`` (the paper's ``b <= 25`` on a GPU); with
``b = 16`` on fc2 (256 units) a few million samples, a few seconds on a CPU.

Modes: ``gradient``; ``fedavg`` only when the client runs one local step on all its data
(one epoch, ``batch_size >= num_samples``): then ``before - after = lr (g + wd w)``, the known
weight-decay part is subtracted and ``lr`` cancels in step 5. Anything else is refused.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from leakjax.attacks.base import (
    check_one_step,
    closed_form,
    one_step_gradient,
    require_one_step,
)
from leakjax.attacks.cpa import dense_layer
from leakjax.attacks.registry import AttackSpec, register
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError

LAYER = "fc1"
MODELS = ("fc2", "mlp")  # first layer a Dense ("fc1") followed by ReLU
_EPS = 1e-30


@dataclasses.dataclass(frozen=True)
class SPEARConfig(Checked):
    """Settings of the sampling and filtering.

    Attributes:
      samples: most sampled row sets (b - 1 rows of L each) before giving up.
      chunk: row sets solved at once (one vmapped program; memory ~ chunk * m floats).
      tol: an entry of ``L q`` counts as zero when ``|.| <= tol * max |L q|``.
      min_zeros: a candidate is sparse-consistent with ``>= max(min_zeros, 2 (b - 1))``
        zeros (a wrong candidate has only its ``b - 1`` forced ones).
      dup: two directions are the same when ``|cos| >= 1 - dup``.
      clamp: clamp the recovered inputs to the valid pixel box.
    """

    samples: int = setting(
        4_000_000,
        low=1,
        key="spear_samples",
        help="most row sets of b - 1 rows sampled before giving up",
    )
    chunk: int = setting(
        16384, low=1, key="spear_chunk", help="row sets solved at once (one vmapped program)"
    )
    tol: float = setting(
        1e-4,
        low=0,
        low_open=True,
        key="spear_tol",
        help="|L q| entries below tol * max count as zero",
    )
    min_zeros: int = setting(
        0, low=0, key="spear_min_zeros", help="zeros a candidate needs (at least 2 (b - 1))"
    )
    mismatch: float = setting(
        1e-3,
        low=0,
        key="spear_mismatch",
        help="stop when this fraction of the ReLU pattern disagrees",
    )
    dup: float = setting(
        1e-3,
        low=0,
        low_open=True,
        key="spear_dup",
        help="directions with |cos| >= 1 - dup are the same",
    )
    clamp: bool = setting(
        True, key="spear_clamp", help="clamp the recovered inputs to the pixel box"
    )


@struct.dataclass
class SPEARState:
    images: Array  # [b, H, W, C], normalized
    kept: Array  # [] int: directions selected (b: all found)
    drawn: Array  # [] int: row sets sampled
    mismatch: Array  # [] float: ReLU-pattern disagreement of the result (0: exact)
    finite: Array  # [] bool: the observation was finite


def check_config(cfg: SPEARConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    del cfg
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def requires(config) -> None:
    """SPEAR reads the first Dense + ReLU layer; fedavg only as one full-batch local step."""
    name = str(config.model.name)
    if name not in MODELS or config.model.get("imprint_bins", 0):
        raise ConfigError(
            f"attack.name='spear' needs model.name in {MODELS} without an imprint block "
            f"(a first Dense + ReLU layer), got model.name={name!r}"
        )
    require_one_step("spear", config)


def _null_vectors(rows: Array) -> Array:
    """``[k, b-1, b] -> [k, b]``: a unit vector orthogonal to the ``b - 1`` rows of each set
    (the last column of the complete QR of its transpose)."""
    q, _ = jnp.linalg.qr(jnp.swapaxes(rows, -1, -2), mode="complete")
    return q[..., -1]


def _zeros(cand: Array, lmat: Array, tol: float) -> Array:
    """``[k, b] -> [k]``: entries of ``L q`` that are zero up to ``tol * max |L q|``."""
    v = jnp.abs(cand @ lmat.T)
    return jnp.sum(v <= tol * jnp.max(v, axis=-1, keepdims=True), axis=-1)


def _merge(pool, score, cand, cscore, dup):
    """Keep the ``P`` sparsest distinct candidates: each of ``cand`` (score ``cscore``, 0 for
    none) replaces, when sparser, the kept one it is parallel to (a sampled null vector is
    only as accurate as its rows allow: the sparsest copy is the most exact), else the
    pool's least sparse."""

    def add(i, carry):
        pool, score = carry
        c = cand[i]
        par = (score > 0) & (jnp.abs(pool @ c) >= 1.0 - dup)
        slot = jnp.where(jnp.any(par), jnp.argmax(par), jnp.argmin(score))
        new = cscore[i] > score[slot]
        pool = jnp.where(new, pool.at[slot].set(c), pool)
        score = jnp.where(new, score.at[slot].set(cscore[i]), score)
        return pool, score

    return jax.lax.fori_loop(0, cand.shape[0], add, (pool, score))


def _select(pool, score, b: int, dup: float):
    """Greedy: the sparsest pool entries, each kept when independent of those kept before
    (its residual off their span is >= ``sqrt(2 dup)``). Returns ``(Q_hat [b, b] unit
    columns, kept [] int)``; columns past ``kept`` complete the basis orthonormally."""
    order = jnp.argsort(-score)

    def take(k, carry):
        basis, qhat, kept = carry
        c = pool[order[k]]
        res = c - basis.T @ (basis @ c)
        norm = jnp.linalg.norm(res)
        ok = (score[order[k]] > 0) & (kept < b) & (norm >= math.sqrt(2.0 * dup))
        slot = jnp.minimum(kept, b - 1)
        basis = jnp.where(ok, basis.at[slot].set(res / jnp.maximum(norm, _EPS)), basis)
        qhat = jnp.where(ok, qhat.at[:, slot].set(c), qhat)
        return basis, qhat, kept + ok.astype(jnp.int32)

    zero = jnp.zeros((b, b), pool.dtype)
    _, qhat, kept = jax.lax.fori_loop(0, pool.shape[0], take, (zero, zero, jnp.int32(0)))
    fill = jnp.linalg.qr(qhat, mode="complete")[0]
    qhat = jnp.where(jnp.arange(b)[None, :] < kept, qhat, fill[:, ::-1])
    return qhat, kept


def _inputs(qhat, prob):
    """``X = Q^{-1} R`` with ``Q = Q_hat diag(Q_hat^{-1} L^+ db)`` (the bias fixes the scales)."""
    scale = jnp.linalg.solve(qhat, prob["srow"])
    scale = jnp.where(jnp.abs(scale) > _EPS, scale, 1.0)
    return jnp.linalg.solve(qhat, prob["r"]) / scale[:, None], qhat * scale[None, :]


def _mismatch(qhat, prob, tol: float):
    """Fraction of (input, unit) pairs where the recovered batch's ReLU pattern
    (``X K + c > 0``) disagrees with the support of ``G^T = L Q``: 0 at the truth."""
    x, q = _inputs(qhat, prob)
    g = jnp.abs(prob["lmat"] @ q).T  # [b, m]
    active = g > tol * jnp.max(g, axis=-1, keepdims=True)
    z = x @ prob["kernel"] + prob["bias"]
    return jnp.mean((active != (z > 0)).astype(jnp.float32))


def directions(prob, key, cfg: SPEARConfig):
    """Sample row sets, filter by sparsity, select ``b`` directions greedily; drawn in chunks
    until the selection's ReLU pattern is consistent (``mismatch <= cfg.mismatch``) or
    ``samples`` are spent.

    Args:
      prob: dict with ``lmat [m, b]``, ``r [b, n]``, ``srow [b]`` (``L^+ db``), ``kernel
        [n, m]`` and ``bias [m]`` (the layer's weights).
      key: PRNG key of the row sets.
      cfg: SPEARConfig.

    Returns:
      ``(Q_hat [b, b], kept [] int, drawn [] int, mismatch [] float)``.
    """
    lmat = prob["lmat"]
    m, b = lmat.shape
    if b == 1:
        qhat = jnp.ones((1, 1), lmat.dtype)
        return qhat, jnp.int32(1), jnp.int32(0), _mismatch(qhat, prob, cfg.tol)
    chunk = min(cfg.chunk, cfg.samples)
    rounds = math.ceil(cfg.samples / chunk)
    need = max(cfg.min_zeros, 2 * (b - 1))
    slots = 2 * b
    top = min(slots, chunk)

    def body(carry):
        r, pool, score, _ = carry
        u = jax.random.uniform(jax.random.fold_in(key, r), (chunk, m))
        _, idx = jax.lax.top_k(u, b - 1)  # b - 1 distinct rows per set
        cand = _null_vectors(lmat[idx])
        zeros = _zeros(cand, lmat, cfg.tol)
        # the commonest direction would fill a chunk's top: a kept one competes only with
        # a sparser copy
        par = (score > 0) & (jnp.abs(cand @ pool.T) >= 1.0 - cfg.dup)
        known = jnp.any(par & (zeros[:, None] <= score), axis=-1)
        best, order = jax.lax.top_k(jnp.where((zeros >= need) & ~known, zeros, 0), top)
        pool, score = _merge(pool, score, cand[order], best, cfg.dup)
        qhat, kept = _select(pool, score, b, cfg.dup)
        return r + 1, pool, score, _mismatch(qhat, prob, cfg.tol)

    def cond(carry):
        r, _, _, mismatch = carry
        return (r < rounds) & (mismatch > cfg.mismatch)

    init = (jnp.int32(0), jnp.zeros((slots, b), lmat.dtype), jnp.zeros((slots,), jnp.int32))
    r, pool, score, mismatch = jax.lax.while_loop(cond, body, init + (jnp.float32(1.0),))
    qhat, kept = _select(pool, score, b, cfg.dup)
    return qhat, kept, r * chunk, mismatch


def recover(obs, input_shape, box, key, cfg: SPEARConfig = SPEARConfig()):
    """The batch of one observation (pure, jit/vmap-able).

    Returns:
      ``(images [b, H, W, C], kept [] int, drawn [] int, mismatch [] float, finite [] bool)``:
      ``kept`` directions selected (``b`` when all were found), ``mismatch`` the ReLU-pattern
      disagreement of the result (0 when exact).
    """
    b = int(obs.num_samples)
    before = dense_layer(obs.variables["params"], LAYER, "variables")
    # fedavg (one step): lr (g + wd w) less the known decay; lr cancels below
    lay = one_step_gradient(obs, dense_layer(obs.update, LAYER, "update"), before)
    # The barrier keeps XLA from constant-folding the SVD when the observation is a
    # closed-over host array (a single, unbatched run).
    dw, db, kernel, bias = jax.lax.optimization_barrier(
        tuple(
            jnp.asarray(a, jnp.float32)
            for a in (lay["kernel"].T, lay["bias"], before["kernel"], before["bias"])
        )
    )  # [m, n], [m], [n, m], [m]
    finite = jnp.isfinite(jnp.max(jnp.abs(dw))) & jnp.isfinite(jnp.max(jnp.abs(db)))
    dw = jnp.where(finite, dw, 0.0)
    db = jnp.where(finite, db, 0.0)
    u, s, vt = jnp.linalg.svd(dw, full_matrices=False)
    u, s = u[:, :b], s[:b]
    prob = dict(
        lmat=u * s,  # G^T = L Q, X = Q^{-1} R
        r=vt[:b],
        srow=(u.T @ db) / jnp.maximum(s, _EPS),  # Q 1 = L^+ db
        kernel=kernel,
        bias=bias,
    )
    qhat, kept, drawn, mismatch = directions(prob, key, cfg)
    x, _ = _inputs(qhat, prob)
    x = jnp.where(jnp.isfinite(x), x, 0.0).reshape((b,) + tuple(input_shape))
    if cfg.clamp:
        lo, hi = (jnp.asarray(v, jnp.float32) for v in box)
        x = jnp.clip(x, lo, hi)
    return x, kept, drawn, mismatch, finite


def make(obs, model, cfg: SPEARConfig = SPEARConfig(), *, steps: int = 1, box, labels=None):
    """SPEAR against one observation of fc2/mlp.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient', or 'fedavg' of one local step).
      model: the attacked `leakjax.models.Model` (first layer ``"fc1"``: Dense + ReLU).
      cfg: SPEARConfig.
      steps: unused (the attack is closed form; run it with ``steps=1``).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: unused (SPEAR recovers no labels).

    Returns:
      An `Attack`: ``init`` runs :func:`recover`, ``step`` is a no-op with loss 0 (NaN when
      the observation was not finite), ``result`` gives the ``b`` inputs.
    """
    del steps, labels
    check_config(cfg, obs.mode)
    lay = dense_layer(obs.update, LAYER, "update")
    shape = tuple(model.input_shape)
    d_in, width = (int(d) for d in lay["kernel"].shape)
    if d_in != math.prod(shape):
        raise ConfigError(
            f"attack.name='spear' needs the model's first layer {LAYER!r} to take the "
            f"{math.prod(shape)} pixels, it takes {d_in} (model.name in {MODELS})"
        )
    b = int(obs.num_samples)
    if b > width:
        raise ConfigError(
            f"attack.name='spear': batch of {b} exceeds the {width} units of layer {LAYER!r} "
            f"(needs batch <= width; attack.batch_size / the client's samples)"
        )
    check_one_step("spear", obs)

    def solve(key):
        x, kept, drawn, mismatch, finite = recover(obs, shape, box, key, cfg)
        return SPEARState(images=x, kept=kept, drawn=drawn, mismatch=mismatch, finite=finite)

    return closed_form(solve, lambda s: {"kept": s.kept, "drawn": s.drawn, "mismatch": s.mismatch})


SPEC = register(
    AttackSpec(
        name="spear",
        modes=("gradient", "fedavg"),
        make=make,
        settings=SPEARConfig,
        check=check_config,
        requires=requires,
        kind="analytic",
        paper="Dimitrov et al. 2024, SPEAR: Exact Gradient Inversion of Batches in Federated "
        "Learning, NeurIPS, arXiv:2403.03945",
        example=(("model.name", "fc2"), ("fl.batch_size", 57)),  # fedavg: one full-batch step
    )
)
