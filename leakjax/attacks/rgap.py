"""R-GAP: closed-form recovery of one image, layer by layer from the head back.

Zhu and Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021,
https://arxiv.org/abs/2010.07733 (Sec. 3).

On `rgap_cnn` (`leakjax.models.cnn.RGAPCNN`: strided convolutions with bias and
LeakyReLU(slope), then the Dense ``"head"``) and the gradient of ONE image:

1. Head (``logits = a K + c``): ``dK = a^T dc``, so its input ``a = dK dc / |dc|^2`` and the
   gradient reaching ``a`` is ``K dc`` (``dc = dL/dlogits``, read off the bias gradient).
2. Each convolution ``l``, from the last back, with its output ``a_l`` and the gradient
   ``ga_l`` reaching it known: undo the activation (``z_l = a_l`` where positive, ``a_l /
   slope`` elsewhere; ``gz_l = ga_l * act'(z_l)``), then its input ``u`` solves two linear
   systems at once:
   - forward: ``conv(u, K_l) + b_l = z_l`` (one equation per output unit),
   - gradient: ``dK_l = patches(u)^T gz_l`` (one per kernel weight),
   both scattered into one dense matrix from the layer's patch index table (each block scaled
   to unit Frobenius norm; the gradient block weighted by ``rgap_grad_weight``), solved by
   least squares through the normal equations (Cholesky with a small ridge, then
   ``rgap_refine`` steps of iterative refinement: 30x faster than an SVD on a CPU and as
   exact while the system has full column rank). ``u`` is the previous layer's output, and
   the gradient reaching it is the forward matrix transposed times ``gz_l``.
3. The first convolution's ``u`` is the image.

Everything is linear algebra on the observation: no optimization, no prior; exact up to float32
rounding (about 90 dB on CIFAR-10 at 32x32). It needs: a single image (with two the head's
gradient mixes them: ``dK = sum_j a_j^T dc_j`` is no longer rank one), an invertible activation
and at least as many equations as unknowns per layer; `rgap_cnn` is built for that.

Modes: ``gradient`` with ``attack.batch_size=1``; ``fedavg`` only as one local step on a client
holding one image (then ``before - after = lr (g + wd w)``: the known decay is removed and
``lr`` cancels: every equation is linear in the gradient, the head's ratio scale-free).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from leakjax.attacks.base import (
    check_one_step,
    closed_form,
    one_step_gradient,
    require_one_step,
)
from leakjax.attacks.registry import AttackSpec, register
from leakjax.models.cnn import RGAP_CONVS, RGAP_SLOPE, RGAPCNN
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError

MODELS = ("rgap_cnn",)
HEAD = "head"
_EPS = 1e-30


@dataclasses.dataclass(frozen=True)
class RGAPConfig(Checked):
    """Settings of the per-layer least squares.

    Attributes:
      grad_weight: weight of the gradient equations against the forward ones (both blocks
        first scaled to unit Frobenius norm).
      ridge: Tikhonov term, relative to the mean diagonal of the normal matrix.
      refine: iterative-refinement steps after the first solve (each one matrix-vector
        product pair and two triangular solves).
      clamp: clamp the recovered image to the valid pixel box.
    """

    grad_weight: float = setting(
        1.0,
        low=0,
        low_open=True,
        key="rgap_grad_weight",
        help="weight of the gradient equations against the forward ones",
    )
    ridge: float = setting(
        1e-6,
        low=0,
        key="rgap_ridge",
        help="ridge of the normal equations, relative to their mean diagonal",
    )
    refine: int = setting(
        3, low=0, key="rgap_refine", help="iterative-refinement steps of each layer's solve"
    )
    clamp: bool = setting(True, key="rgap_clamp", help="clamp the image to the pixel box")


@struct.dataclass
class RGAPState:
    images: Array  # [1, H, W, C], normalized
    residual: Array  # [] float: largest relative residual of the layers' systems
    finite: Array  # [] bool: the observation and the result were finite


def check_config(cfg: RGAPConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    del cfg
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def requires(config) -> None:
    """R-GAP inverts `rgap_cnn` only, one image at a time; fedavg only as one local step."""
    name = str(config.model.name)
    if name not in MODELS or config.model.get("imprint_bins", 0):
        raise ConfigError(
            f"attack.name='rgap' needs model.name in {MODELS} without an imprint block "
            "(invertible LeakyReLU layers with enough equations each), "
            f"got model.name={name!r}"
        )
    if str(config.attack.mode) == "gradient" and int(config.attack.batch_size) != 1:
        raise ConfigError(
            "attack.name='rgap' needs attack.batch_size=1 (R-GAP recovers one image: with "
            f"more the head's gradient mixes them), got attack.batch_size="
            f"{config.attack.batch_size}"
        )
    require_one_step("rgap", config)


def layer_shapes(input_shape) -> list[tuple[int, int, int]]:
    """The input shape ``(H, W, C)`` of every convolution of `RGAP_CONVS`, then the head's."""
    h, w, c = (int(d) for d in input_shape)
    out = [(h, w, c)]
    for _, features, k, s, p in RGAP_CONVS:
        h, w, c = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, features
        out.append((h, w, c))
    return out


def patch_index(in_shape, kernel: int, stride: int, pad: int) -> np.ndarray:
    """``[positions, kernel * kernel * Cin]`` flat input index of every window entry (HWIO
    kernel order, cross-correlation as `leakjax.models.conv.conv2d`); ``n`` (one past the
    input) where the window reads padding."""
    h, w, c = in_shape
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    i = np.arange(ho)[:, None, None, None, None] * stride - pad
    j = np.arange(wo)[None, :, None, None, None] * stride - pad
    di = np.arange(kernel)[None, None, :, None, None]
    dj = np.arange(kernel)[None, None, None, :, None]
    ch = np.arange(c)[None, None, None, None, :]
    row, col = i + di, j + dj
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    idx = np.where(inside, (row * w + col) * c + ch, h * w * c)
    return idx.reshape(ho * wo, kernel * kernel * c).astype(np.int32)


def layer_system(idx: np.ndarray, n: int, kernel: Array, gz: Array) -> tuple[Array, Array]:
    """The forward ``[P * Cout, n]`` and gradient ``[k * Cout, n]`` matrices of one
    convolution in its input ``u`` (flat): ``Af u = conv(u, K)``, ``Ag u = patches(u)^T gz``
    (``kernel [k, Cout]``, ``gz [P, Cout]``)."""
    npos, kk = idx.shape
    cout = kernel.shape[-1]
    rows = jnp.arange(npos)[:, None]
    af = (
        jnp.zeros((npos, n + 1, cout), kernel.dtype)
        .at[rows, idx]
        .add(jnp.broadcast_to(kernel[None], (npos, kk, cout)))
    )
    ag = (
        jnp.zeros((kk, n + 1, cout), kernel.dtype)
        .at[jnp.arange(kk)[None, :], idx]
        .add(jnp.broadcast_to(gz[:, None, :], (npos, kk, cout)))
    )
    af = jnp.swapaxes(af[:, :n], 1, 2).reshape(npos * cout, n)
    ag = jnp.swapaxes(ag[:, :n], 1, 2).reshape(kk * cout, n)
    return af, ag


def lstsq(a: Array, r: Array, ridge: float, refine: int) -> Array:
    """Least squares ``min |a u - r|`` via the normal equations (Cholesky, relative ridge)
    with ``refine`` steps of iterative refinement."""
    gram = a.T @ a
    lam = ridge * jnp.trace(gram) / gram.shape[0]
    fac = jax.scipy.linalg.cho_factor(gram + lam * jnp.eye(gram.shape[0], dtype=gram.dtype))
    u = jax.scipy.linalg.cho_solve(fac, a.T @ r)
    for _ in range(refine):
        u = u + jax.scipy.linalg.cho_solve(fac, a.T @ (r - a @ u))
    return u


def recover(obs, input_shape, box, cfg: RGAPConfig = RGAPConfig()):
    """The image of one observation (pure, jit/vmap-able).

    Returns:
      ``(image [1, H, W, C], residual [] float, finite [] bool)``: ``residual`` the largest
      relative residual ``|A u - r| / |r|`` of the layers' systems (~1e-6 when exact).
    """
    params = obs.variables["params"]
    grads = one_step_gradient(obs, obs.update, params)
    head_k = jnp.asarray(params[HEAD]["kernel"], jnp.float32)
    dk, dc = grads[HEAD]["kernel"], grads[HEAD]["bias"]
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    a = dk @ dc / jnp.maximum(dc @ dc, _EPS)
    ga = head_k @ dc
    shapes = layer_shapes(input_shape)
    worst = jnp.float32(0.0)
    for (name, _, k, s, p), in_shape in reversed(list(zip(RGAP_CONVS, shapes[:-1], strict=True))):
        n = int(np.prod(in_shape))
        kernel = jnp.asarray(params[name]["kernel"], jnp.float32)
        cout = kernel.shape[-1]
        kernel = kernel.reshape(-1, cout)
        z = jnp.where(a > 0, a, a / RGAP_SLOPE)
        gz = (ga * jnp.where(z > 0, 1.0, RGAP_SLOPE)).reshape(-1, cout)
        af, ag = layer_system(patch_index(in_shape, k, s, p), n, kernel, gz)
        rf = (z.reshape(-1, cout) - jnp.asarray(params[name]["bias"], jnp.float32)).ravel()
        rg = grads[name]["kernel"].reshape(-1)
        wf = 1.0 / jnp.maximum(jnp.linalg.norm(af), _EPS)
        wg = cfg.grad_weight / jnp.maximum(jnp.linalg.norm(ag), _EPS)
        mat = jnp.concatenate([af * wf, ag * wg])
        rhs = jnp.concatenate([rf * wf, rg * wg])
        u = lstsq(mat, rhs, cfg.ridge, cfg.refine)
        res = jnp.linalg.norm(mat @ u - rhs) / jnp.maximum(jnp.linalg.norm(rhs), _EPS)
        worst = jnp.maximum(worst, res)
        ga = af.T @ gz.ravel()  # the gradient reaching this layer's input
        a = u
    x = a.reshape((1,) + tuple(input_shape))
    finite = finite & jnp.all(jnp.isfinite(x))
    x = jnp.where(jnp.isfinite(x), x, 0.0)
    if cfg.clamp:
        lo, hi = (jnp.asarray(v, jnp.float32) for v in box)
        x = jnp.clip(x, lo, hi)
    return x, worst, finite


def make(obs, model, cfg: RGAPConfig = RGAPConfig(), *, steps: int = 1, box, labels=None):
    """R-GAP against one observation of `rgap_cnn`.

    Args:
      obs: `leakjax.fl.observation.Observation` of ONE image ('gradient', or 'fedavg' of one
        local step).
      model: the attacked `leakjax.models.Model` (`rgap_cnn`).
      cfg: RGAPConfig.
      steps: unused (the attack is closed form; run it with ``steps=1``).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: unused (R-GAP needs no labels: the head's bias gradient carries them).

    Returns:
      An `Attack`: ``init`` runs :func:`recover`, ``step`` is a no-op with loss 0 (NaN when
      the observation or the result was not finite; metric ``residual``), ``result`` gives
      the image.
    """
    del steps, labels
    check_config(cfg, obs.mode)
    if not isinstance(model.module, RGAPCNN):
        raise ConfigError(
            f"attack.name='rgap' needs model.name in {MODELS} (invertible LeakyReLU layers), "
            f"got model.name={model.name!r}"
        )
    b = int(obs.num_samples)
    if b != 1:
        raise ConfigError(
            f"attack.name='rgap' recovers one image per gradient, got a batch of {b} "
            "(attack.batch_size=1; in fedavg mode a client holding one image)"
        )
    check_one_step("rgap", obs)
    shape = tuple(model.input_shape)

    def solve(key):
        del key
        x, residual, finite = recover(obs, shape, box, cfg)
        return RGAPState(images=x, residual=residual, finite=finite)

    return closed_form(solve, lambda state: {"residual": state.residual})


SPEC = register(
    AttackSpec(
        name="rgap",
        modes=("gradient", "fedavg"),
        make=make,
        settings=RGAPConfig,
        check=check_config,
        requires=requires,
        kind="analytic",
        paper="Zhu and Blaschko 2021, R-GAP: Recursive Gradient Attack on Privacy, ICLR, "
        "arXiv:2010.07733",
        # fedavg: 20 clients of one image each (data.max_train=20), one local step
        example=(
            ("model.name", "rgap_cnn"),
            ("attack.batch_size", 1),
            ("data.max_train", 20),
            ("fl.batch_size", 1),
        ),
    )
)
