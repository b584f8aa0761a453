"""Cocktail Party Attack (CPA); its unmixing is shared with CPA-FI (`leakjax.attacks.cpa_fi`).

Kariyappa, Guo, Ngo, Mahajan, Sankaranarayanan, "Cocktail Party Attack: Breaking Aggregation-
Based Privacy in Federated Learning using Independent Component Analysis", ICML 2023,
https://arxiv.org/abs/2209.05578; as benchmarked in Zhu, Huang, Xie, arXiv 2409.19301
(Sec. III, Eqs. 21-24; Sec. IV-E, Figs. 9, 10, 22, 23).

The gradient of a fully connected layer ``y = W z + b`` over a batch of ``B`` inputs is
``dW = (1/B) sum_j delta_j z_j^T``: every row of ``dW`` (one per output unit) is a linear mix of
the ``B`` inputs, a blind source separation problem ``G = C Z``. CPA

1. centers the rows of ``G`` (``d_out x d_in``), whitens them with the top-``B`` eigenpairs of
   their ``d_out x d_out`` covariance (``eigh``; for wide layers the same top-``B`` subspace is
   found by randomized subspace iteration, ``whiten='randomized'``, which is exact here
   because ``G`` has rank ``B``),
2. optimizes an unmixing matrix ``U`` (``B x B``, identity init, rows normalised every step) with
   Adam on: negentropy ``-mean_k (mean_d log cosh(a s_kd) / a)^2`` (non-Gaussian sources), the
   decorrelation penalty ``decor * sum_{i != j} (exp(T |u_i . u_j|) - 1) / B^2`` (the mean over
   all ``B^2`` entries, as the reference, but without its constant diagonal), total variation
   of the images the un-centered components form (image mode, when ``nv == 0``), and for
   embeddings a sign penalty ``nv * mean_k min(|relu(-s_k)|, |relu(s_k)|)`` and ``l1 * mean|s|``,
3. resolves each component's sign and scale. The layer's bias gradient ``db = (1/B) sum_j
   delta_j`` is the same mixture applied to a constant input of ones, so the unmixing row that
   isolates source ``k`` maps ``db`` to exactly the factor ``c_k`` that scales ``z_k``:
   ``sign(c_k)`` fixes the sign (the reference leaves it unresolved, REFERENCE.md section 5.7;
   TV cannot decide it since ``TV(-x) = TV(x)``), and ``output='bias'`` divides by ``c_k`` to
   get the input in its own units.
4. maps the components to images: ``output='minmax'`` (default, as the reference) min-max
   normalises each sign-resolved component to [0, 1] (after multiplying each channel by the
   data set's std, so all channels share one scale) and returns it in normalized units;
   ``output='bias'`` returns ``component / c_k`` clamped to the valid box.

CPA-FI (``cpa_fi``, `leakjax.attacks.cpa_fi`) runs the same unmixing on the embeddings that
enter a CNN's Dense layer, then inverts them to images.

Modes: ``gradient`` (one gradient of the batch) and ``fedavg``. For ``fedavg`` the attacked
layer's rows of ``params_before - params_after`` are used as the mixed signal: the update is
the lr-weighted sum of every local step's gradient, so when the layer is the first (fc2's
``"fc1"``) it is still an exact linear mix of the client's ``n`` local images (their inputs do
not change during training; momentum and the bias trick stay linear, weight decay adds a small
non-image term), with ``B = n`` sources (needs ``n <= d_out``). For CPA-FI the embeddings change
as the earlier layers train, so the mix is only approximate.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError

OUTPUTS = ("minmax", "bias")
WHITEN = ("auto", "eigh", "randomized")
# traced (`leakjax.attacks.base.hyperparams`): Adam's step and the objective's weights
HYPERPARAMS = ("lr", "a", "decor", "temperature", "tv", "nv", "l1")
_EPS = 1e-20


@dataclasses.dataclass(frozen=True)
class CPAConfig(Checked):
    """Hyperparameters (defaults: the reference's fc2 settings, cpa_attack.py).

    Attributes:
      lr: Adam step size for the unmixing matrix.
      decor: weight of the decorrelation penalty.
      temperature: ``T`` in ``exp(T |cos|)``.
      tv: image mode: TV weight on the components; CPA-FI: TV weight of feature inversion.
      nv: weight of the sign penalty (embeddings).
      l1: weight of the L1 penalty (embeddings).
      a: negentropy's ``log cosh(a s) / a`` scale.
      layer: the attacked Dense (top-level name in ``params``).
      output: 'minmax' or 'bias' (see the module docstring).
      whiten: 'eigh', 'randomized' or 'auto' (randomized when the layer has > 1024 outputs).
      init_noise: std of Gaussian noise added to the identity init (restarts differ if > 0).
      fi: CPA-FI: weight of the cosine feature-matching term.
      fi_lr: CPA-FI: Adam step size on the images.
      cpa_steps: CPA-FI: unmixing steps run inside ``init``.
    """

    lr: float = setting(1e-3, low=0, low_open=True)
    decor: float = setting(1.47, low=0)
    temperature: float = setting(12.4, low=0)
    tv: float = setting(3.1, low=0)
    nv: float = setting(0.0, low=0)
    l1: float = setting(0.0, low=0)
    a: float = setting(1.0, low=0, low_open=True)
    layer: str = "fc1"
    output: str = setting("minmax", choices=OUTPUTS, key="cpa_output")
    whiten: str = setting("auto", choices=WHITEN)
    init_noise: float = setting(0.0, low=0)
    fi: float = setting(1.0, low=0)
    fi_lr: float = setting(0.1, low=0, low_open=True)
    cpa_steps: int = setting(25000, low=0)


@struct.dataclass
class CPAState:
    u: Array  # [B, B] unmixing matrix (rows unit norm)
    opt_state: optax.OptState
    gw: Array  # [B, d_in] whitened centered rows
    offset: Array  # [B, 1] whitened row means (undoes the centering)
    bmix: Array  # [B] whitened bias gradient (the mix of a constant-one input)
    diffs: tuple | None = None  # image mode: image_diffs of gw + offset (for TV)


def check_config(cfg: CPAConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def dense_layer(tree, name: str, what: str):
    """``tree[name]`` (a Dense's kernel and bias), or a one-line ConfigError naming the layers."""
    if name not in tree or "kernel" not in tree[name] or "bias" not in tree[name]:
        raise ConfigError(
            f"attack.layer={name!r} is not a Dense with a bias in the model's {what} "
            f"(top-level names: {', '.join(sorted(tree))})"
        )
    return tree[name]


def whiten(g: Array, num: int, method: str = "auto") -> tuple[Array, Array]:
    """Top-``num`` PCA whitening of the centered rows of ``g``.

    Args:
      g: ``[d_out, d_in]`` rows to whiten.
      num: number of sources ``B`` (``<= d_out``).
      method: 'eigh' (of the ``d_out x d_out`` covariance), 'randomized' (subspace iteration
        for the top ``num + 10`` directions, then ``eigh`` of the small projected covariance)
        or 'auto'.

    Returns:
      ``(wht [B, d_out], mu [d_out, 1])``: whitened centered rows are ``wht @ (g - mu)``.
    """
    d_out, d_in = g.shape
    mu = jnp.mean(g, axis=1, keepdims=True)
    gc = g - mu
    if method == "auto":
        method = "randomized" if d_out > 1024 else "eigh"
    if method == "eigh":
        cov = gc @ gc.T / max(d_in - 1, 1)
        vals, vecs = jnp.linalg.eigh(cov)  # ascending
        vals, vecs = vals[::-1][:num], vecs[:, ::-1][:, :num]
    else:
        k = min(num + 10, d_out)
        q = jax.random.normal(jax.random.key(0), (d_out, k), g.dtype)
        for _ in range(3):  # rank(gc) <= B: a few subspace iterations are plenty
            q, _ = jnp.linalg.qr(gc @ (gc.T @ q))
        m = q.T @ gc  # [k, d_in]
        vals, small = jnp.linalg.eigh(m @ m.T / max(d_in - 1, 1))
        vals, small = vals[::-1][:num], small[:, ::-1][:, :num]
        vecs = q @ small
    vals = jnp.maximum(vals, 1e-12 * jnp.maximum(vals[0], _EPS))
    wht = vecs.T / (jnp.sqrt(vals)[:, None] + _EPS)
    return wht, mu


def _rows(u: Array) -> Array:
    return u / (jnp.linalg.norm(u, axis=-1, keepdims=True) + _EPS)


def _logcosh(x: Array) -> Array:
    ax = jnp.abs(x)
    return ax + jnp.log1p(jnp.exp(-2.0 * ax)) - math.log(2.0)


def image_diffs(rows: Array, image_shape) -> tuple[Array, Array]:
    """Horizontal and vertical neighbour differences of rows seen as NHWC images, flattened:
    TV is linear before the absolute value, so ``tv_l1(u @ rows) = mean|u @ dx| + mean|u @ dy|``
    and each step needs two small matmuls instead of image-shaped work."""
    x = rows.reshape((rows.shape[0],) + tuple(image_shape))
    dx = (x[:, :, 1:, :] - x[:, :, :-1, :]).reshape(rows.shape[0], -1)
    dy = (x[:, 1:, :, :] - x[:, :-1, :, :]).reshape(rows.shape[0], -1)
    return dx, dy


def cpa_loss(u, gw, offset, cfg: CPAConfig, diffs=None, hp=None) -> Array:
    """The CPA objective of unmixing matrix ``u``.

    Args:
      u: ``[B, B]`` unmixing matrix (rows are normalised here).
      gw: ``[B, d_in]`` whitened centered rows; offset: ``[B, 1]`` their whitened means.
      cfg: CPAConfig: which terms the objective has (a weight of 0 leaves its term out).
      diffs: image mode: :func:`image_diffs` of ``gw + offset`` (enables the TV term).
      hp: the traced weights (`HYPERPARAMS`: a, decor, temperature, tv, nv, l1); None: the
        settings' values.
    """
    hp = hyperparams(cfg, HYPERPARAMS) if hp is None else hp
    un = _rows(u)
    s = un @ gw
    ne = -jnp.mean(jnp.square(jnp.mean(_logcosh(hp["a"] * s), axis=-1) / hp["a"]))
    b = u.shape[0]
    loss = ne
    if cfg.decor > 0:
        cos = jnp.abs(un @ un.T)
        off = (jnp.exp(hp["temperature"] * cos) - 1.0) * (1.0 - jnp.eye(b, dtype=u.dtype))
        loss = loss + hp["decor"] * jnp.sum(off) / (b * b)
    if diffs is not None and cfg.tv > 0 and cfg.nv == 0:
        dx, dy = diffs
        loss = loss + hp["tv"] * (jnp.mean(jnp.abs(un @ dx)) + jnp.mean(jnp.abs(un @ dy)))
    if cfg.nv > 0 or cfg.l1 > 0:
        x = s + un @ offset  # undo the centering
        if cfg.nv > 0:
            neg = jnp.linalg.norm(jax.nn.relu(-x), axis=-1)
            pos = jnp.linalg.norm(jax.nn.relu(x), axis=-1)
            loss = loss + hp["nv"] * jnp.mean(jnp.minimum(neg, pos))
        if cfg.l1 > 0:
            loss = loss + hp["l1"] * jnp.mean(jnp.abs(x))
    return loss


def prepare_unmixing(obs, cfg: CPAConfig, num: int, key, image_shape=None) -> CPAState:
    """The unmixing problem of ``cfg.layer``'s update: whitened rows, identity init (plus
    ``init_noise``), Adam state; ``image_shape`` enables the TV term (image mode)."""
    lay = dense_layer(obs.update, cfg.layer, "update")
    # The barrier keeps XLA from constant-folding the whitening when the observation is a
    # closed-over host array (a single, unbatched run).
    g, gb = jax.lax.optimization_barrier(
        (jnp.asarray(lay["kernel"], jnp.float32).T, jnp.asarray(lay["bias"], jnp.float32))
    )  # [d_out, d_in], [d_out]
    wht, mu = whiten(g, num, cfg.whiten)
    u = jnp.eye(num, dtype=jnp.float32)
    if cfg.init_noise > 0:
        u = u + cfg.init_noise * jax.random.normal(key, u.shape)
    u = _rows(u)
    gw, offset = wht @ (g - mu), wht @ mu
    diffs = None if image_shape is None else image_diffs(gw + offset, image_shape)
    return CPAState(
        u=u,
        opt_state=optax.adam(cfg.lr).init(u),
        gw=gw,
        offset=offset,
        bmix=wht @ gb,
        diffs=diffs,
    )


def cpa_step(state: CPAState, cfg: CPAConfig, hp=None) -> tuple[CPAState, Array]:
    """One Adam step on the unmixing matrix (rows renormalised); returns the loss. ``hp``:
    the traced `HYPERPARAMS` (None: the settings' values)."""
    hp = hyperparams(cfg, HYPERPARAMS) if hp is None else hp
    loss, grad = jax.value_and_grad(cpa_loss)(state.u, state.gw, state.offset, cfg, state.diffs, hp)
    upd, opt_state = optax.adam(hp["lr"]).update(grad, state.opt_state, state.u)
    u = _rows(optax.apply_updates(state.u, upd))
    return state.replace(u=u, opt_state=opt_state), loss


def components(state: CPAState) -> tuple[Array, Array]:
    """``(comp [B, d_in], c [B])``: the un-centered unmixed rows and the factor each one's
    bias-gradient mix gives (its source's sign and scale)."""
    un = _rows(state.u)
    return un @ (state.gw + state.offset), un @ state.bmix


def sign_of(c: Array) -> Array:
    """+1 / -1 per component: the sign of its bias-gradient factor (0 counts as +1)."""
    return jnp.where(c < 0, -1.0, 1.0)


def num_sources(obs, layer_update, name: str) -> int:
    """``B``: the observation's sample count, refused when the layer has fewer outputs."""
    num = int(obs.num_samples)
    d_out = int(layer_update["kernel"].shape[-1])
    if num > d_out:
        raise ConfigError(
            f"attack.layer={name!r} has {d_out} outputs, fewer than the {num} mixed inputs "
            f"(CPA needs B <= d_out)"
        )
    return num


def make(
    obs, model, cfg: CPAConfig = CPAConfig(), *, steps: int, box, labels=None, hparams=None
) -> Attack:
    """CPA on a layer whose input is the image (fc2's "fc1").

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg').
      model: the attacked `leakjax.models.Model`.
      cfg: CPAConfig.
      steps: unmixing steps (informational; `attacks.run` decides).
      box: (lo, hi) per-channel bounds of valid normalized pixels (the data set's mean and
        std are recovered from them for the min-max mapping).
      labels: unused (CPA recovers no labels).
      hparams: traced `HYPERPARAMS` (float32 scalars) used instead of the settings' values;
        which terms the objective has still follows ``cfg`` (a weight of 0 leaves it out).

    Returns:
      An `Attack` whose state is the unmixing problem; ``result`` gives ``B`` images.
    """
    del steps, labels
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    check_config(cfg, obs.mode)
    lay = dense_layer(obs.update, cfg.layer, "update")
    shape = tuple(model.input_shape)
    d_in = int(lay["kernel"].shape[-2])
    if d_in != math.prod(shape):
        raise ConfigError(
            f"attack.layer={cfg.layer!r} takes {d_in} inputs, not the {math.prod(shape)} "
            f"pixels of an image; use attack.name='cpa_fi' for embeddings"
        )
    num = num_sources(obs, lay, cfg.layer)
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
    std = 1.0 / (hi - lo)
    mean = -lo * std

    def init(key):
        return prepare_unmixing(obs, cfg, num, key, shape)

    def step(state, key):
        del key
        state, loss = cpa_step(state, cfg, hp)
        return state, {"loss": loss}

    def result(state):
        comp, c = components(state)
        if cfg.output == "bias":
            ok = jnp.abs(c) > _EPS
            x = comp / jnp.where(ok, c, 1.0)[:, None]
            x = jnp.where(ok[:, None], x, 0.0).reshape((num,) + shape)
            return Reconstruction(images=jnp.clip(x, lo, hi), labels=None)
        y = (sign_of(c)[:, None] * comp).reshape((num,) + shape) * std
        y_min = jnp.min(y, axis=(1, 2, 3), keepdims=True)
        y_max = jnp.max(y, axis=(1, 2, 3), keepdims=True)
        x01 = (y - y_min) / (y_max - y_min + 1e-12)
        return Reconstruction(images=(x01 - mean) / std, labels=None)

    return Attack(init=init, step=step, result=result)


PAPER = "Kariyappa et al. 2023, Cocktail Party Attack, ICML, arXiv:2209.05578"
SPEC = register(
    AttackSpec(
        name="cpa",
        modes=("gradient", "fedavg"),
        make=make,
        settings=CPAConfig,
        check=check_config,
        paper=PAPER,
        example=(("model.name", "fc2"),),
        hyperparams=HYPERPARAMS,
    )
)
