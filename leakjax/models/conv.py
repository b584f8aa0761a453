"""2-D convolution with interchangeable, twice-differentiable implementations.

Gradient-inversion attacks (DLG, Zhu et al., arXiv 1906.08935; Inverting Gradients, Geiping et
al., arXiv 2003.14053; DLF, Dimitrov et al., arXiv 2202.05165) differentiate through gradients
of convolutional networks thousands of times, so how fast a convolution and its derivatives
run decides how long an attack takes. On XLA's CPU backend the forward convolution and its
input gradient are fast, but the kernel gradient (a convolution with the batch as contracting
dimension) runs 5-15x slower than the same product as a matmul. The implementations here give
the same values (to float32 rounding) and can all be differentiated repeatedly:

- ``"xla"``: ``lax.conv_general_dilated`` with XLA's own derivatives (the one for GPUs).
- ``"hybrid"``: a ``custom_vjp`` whose forward and input gradient are XLA convolutions and whose
  kernel gradient is one matmul ``patches(x)^T @ g``; the rules call the custom function
  recursively, so grad-of-grad never meets XLA's slow kernel-gradient convolution either.
  Reverse mode only (``grad``, ``vjp``, grad-of-grad); ``jvp``/``jacfwd`` raise.
- ``"im2col"``: pad, take the ``kh * kw`` (strided) windows with ``lax.slice``, concatenate
  them along channels and do one matmul with the kernel reshaped to ``[kh * kw * cin, cout]``;
  plain autodiff, so forward mode works too.
- ``"patches"``: the same matmul, with ``lax.conv_general_dilated_patches`` building patches.
- ``"shifted"``: the sum of ``kh * kw`` matmuls, one per window (no patch tensor).

``"auto"`` picks per backend (:func:`resolve_impl`) the one measured fastest by
``python -m benchmarks.conv_impl`` (BUILD_NOTES.md has the table). Pooling
(:mod:`leakjax.models.pooling`) takes the same ``impl``; torch's default initializers are in
:mod:`leakjax.models.initializers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from leakjax import precision
from leakjax.models.initializers import torch_uniform_init
from leakjax.types import Array, ConfigError

IMPLS = ("auto", "xla", "hybrid", "im2col", "patches", "shifted")

# Measured fastest per backend (benchmarks/conv_impl.py); backends not listed use "xla".
_AUTO = {"cpu": "hybrid"}

Padding = str | int | Sequence[tuple[int, int]]
_DN = ("NHWC", "HWIO", "NHWC")


def resolve_impl(impl: str) -> str:
    """Returns the concrete implementation for ``impl`` ("auto" resolved for the backend).

    Args:
        impl: one of :data:`IMPLS`.

    Returns:
        A name other than "auto".

    Raises:
        ConfigError: ``impl`` is not one of :data:`IMPLS`.
    """
    if impl not in IMPLS:
        raise ConfigError(f"conv_impl={impl!r} is not one of {', '.join(IMPLS)}")
    if impl == "auto":
        return _AUTO.get(jax.default_backend(), "xla")
    return impl


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    """``v`` as an ``(h, w)`` pair of ints (an int is used for both)."""
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def explicit_padding(
    padding: Padding, in_hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Converts "SAME"/"VALID"/an int/per-axis pairs to explicit ``((lo, hi), (lo, hi))``.

    An int pads both sides of both axes, as ``torch.nn.Conv2d(padding=p)``. "SAME" follows
    XLA (output ``ceil(n / stride)``, odd padding at the end; differs from torch at stride 2).

    Raises:
        ConfigError: an unknown padding string.
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0), (0, 0))
        if mode != "SAME":
            raise ConfigError(f"padding={padding!r} is not one of SAME, VALID, an int, pairs")
        pads = []
        for n, k, s in zip(in_hw, kernel, strides, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return (pads[0], pads[1])
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def _windows(x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int], pads) -> list[Array]:
    """The ``kh * kw`` strided windows of padded ``x``, row-major over the kernel taps."""
    kh, kw = kernel_hw
    sh, sw = strides
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    b, h, w, c = x.shape
    ho = (h - kh) // sh + 1
    wo = (w - kw) // sw + 1
    return [
        lax.slice(
            x, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _xla_conv(x, kernel, strides, pads):
    return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN)


def _im2col_conv(x, kernel, strides, pads):
    kh, kw, cin, cout = kernel.shape
    wins = _windows(x, (kh, kw), strides, pads)
    patches = wins[0] if len(wins) == 1 else jnp.concatenate(wins, axis=-1)
    return patches @ kernel.reshape(kh * kw * cin, cout)


def _patches_conv(x, kernel, strides, pads):
    kh, kw, cin, cout = kernel.shape
    patches = lax.conv_general_dilated_patches(x, (kh, kw), strides, pads, dimension_numbers=_DN)
    # The patch features come ordered (cin, kh, kw).
    return patches @ jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * kh * kw, cout)


def _shifted_conv(x, kernel, strides, pads):
    kh, kw, cin, cout = kernel.shape
    wins = _windows(x, (kh, kw), strides, pads)
    taps = kernel.reshape(kh * kw, cin, cout)
    out = wins[0] @ taps[0]
    for t in range(1, kh * kw):
        out = out + wins[t] @ taps[t]
    return out


def _wgrad(x, g, kernel_shape, strides, pads):
    """Kernel gradient ``patches(x)^T @ g`` as one matmul, ``[kh, kw, cin, cout]``."""
    kh, kw, cin, cout = kernel_shape
    wins = _windows(x, (kh, kw), strides, pads)
    patches = wins[0] if len(wins) == 1 else jnp.concatenate(wins, axis=-1)
    return (patches.reshape(-1, kh * kw * cin).T @ g.reshape(-1, cout)).reshape(kernel_shape)


def _input_grad(g, kernel, x_hw, strides, pads):
    """Input gradient: a stride-1 convolution of the (dilated) ``g`` with the flipped kernel."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (h, w), (ho, wo) = strides, x_hw, g.shape[1:3]
    lo_h, lo_w = kh - 1 - pads[0][0], kw - 1 - pads[1][0]
    hi_h = h - ((ho - 1) * sh + 1) - lo_h + kh - 1
    hi_w = w - ((wo - 1) * sw + 1) - lo_w + kw - 1
    flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    if (sh, sw) == (1, 1) and min(lo_h, hi_h, lo_w, hi_w) >= 0:
        return _hybrid_conv(g, flipped, (1, 1), ((lo_h, hi_h), (lo_w, hi_w)))
    dims = ((0, 0, 0), (lo_h, hi_h, sh - 1), (lo_w, hi_w, sw - 1), (0, 0, 0))
    g = lax.pad(g, jnp.zeros((), g.dtype), dims)
    return _hybrid_conv(g, flipped, (1, 1), ((0, 0), (0, 0)))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _hybrid_conv(x, kernel, strides, pads):
    return _xla_conv(x, kernel, strides, pads)


def _hybrid_fwd(x, kernel, strides, pads):
    # Residuals: the inputs, plus (as pytree structure, so static) which gradients are needed.
    # The primal calls the custom function itself, so that when this forward pass is
    # differentiated again (grad-of-grad) it goes through these rules, not XLA's.
    y = _hybrid_conv(x.value, kernel.value, strides, pads)
    need = (() if x.perturbed else None, () if kernel.perturbed else None)
    return y, (x.value, kernel.value, need)


def _hybrid_bwd(strides, pads, res, g):
    x, kernel, (need_dx, need_dk) = res
    if isinstance(g, SymbolicZero):
        return None, None
    dx = None if need_dx is None else _input_grad(g, kernel, x.shape[1:3], strides, pads)
    dk = None if need_dk is None else _wgrad(x, g, kernel.shape, strides, pads)
    return dx, dk


_hybrid_conv.defvjp(_hybrid_fwd, _hybrid_bwd, symbolic_zeros=True)


_CONVS = {
    "xla": _xla_conv,
    "hybrid": _hybrid_conv,
    "im2col": _im2col_conv,
    "patches": _patches_conv,
    "shifted": _shifted_conv,
}


def conv2d(
    x: Array,
    kernel: Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    impl: str = "auto",
) -> Array:
    """2-D cross-correlation of NHWC ``x`` with an HWIO ``kernel``, as ``torch.nn.Conv2d``.

    Args:
        x: input ``[B, H, W, Cin]``.
        kernel: ``[kh, kw, Cin, Cout]``.
        strides: an int or ``(sh, sw)``.
        padding: "SAME", "VALID", an int (both sides) or ``((lo, hi), (lo, hi))``.
        impl: one of :data:`IMPLS`.

    Returns:
        ``[B, Ho, Wo, Cout]``; every impl gives the same values up to float32 rounding.
    """
    impl = resolve_impl(impl)
    kh, kw = kernel.shape[:2]
    strides = pair(strides)
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    _windows_check(x.shape, (kh, kw), pads)
    x, kernel = precision.operands(x, kernel)  # the precision policy's operands (f32: as is)
    return _CONVS[impl](x, kernel, strides, pads)


def _windows_check(shape, kernel_hw, pads) -> None:
    h = shape[1] + sum(pads[0])
    w = shape[2] + sum(pads[1])
    if h < kernel_hw[0] or w < kernel_hw[1]:
        raise ConfigError(
            f"input_shape: conv input {h}x{w} (padded) is smaller than its kernel "
            f"{kernel_hw[0]}x{kernel_hw[1]}"
        )


class Conv(nn.Module):
    """2-D convolution with ``nn.Conv``'s parameters and torch's default init.

    Parameters: ``kernel [kh, kw, Cin, Cout]`` and, with ``use_bias``, ``bias [Cout]``.

    Attributes:
        features: output channels.
        kernel_size: an int or ``(kh, kw)``.
        strides: an int or ``(sh, sw)``.
        padding: an int (both sides, as torch), "SAME", "VALID" or explicit pairs.
        use_bias: add a bias.
        impl: implementation, one of :data:`IMPLS`.
        kernel_init: replaces torch's ``U(+-1/sqrt(fan_in))`` kernel init.
        bias_init: replaces torch's ``U(+-1/sqrt(fan_in))`` bias init.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Padding = 0
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: nn.initializers.Initializer | None = None
    bias_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = pair(self.kernel_size)
        cin = x.shape[-1]
        default = torch_uniform_init(kh * kw * cin)
        kernel = self.param(
            "kernel", self.kernel_init or default, (kh, kw, cin, self.features), jnp.float32
        )
        y = conv2d(x, kernel, self.strides, self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init or default, (self.features,), jnp.float32)
        return y


def dense(
    x: Array,
    features: int,
    name: str,
    kernel_init: nn.initializers.Initializer | None = None,
    bias_init: nn.initializers.Initializer | None = None,
) -> Array:
    """Applies an ``nn.Dense`` with torch's ``nn.Linear`` default init (inside a compact call);
    its product takes the precision policy's operands (`leakjax.precision`)."""
    default = torch_uniform_init(x.shape[-1])
    return nn.Dense(
        features,
        kernel_init=kernel_init or default,
        bias_init=bias_init or default,
        name=name,
        dot_general=precision.dot_general,
    )(x)


def check_tap(return_features: str | None, denses: Sequence[str]) -> None:
    """Raises unless ``return_features`` is None or the name of one of the model's Denses."""
    if return_features is not None and return_features not in denses:
        raise ConfigError(f"features layer={return_features!r} is not one of {', '.join(denses)}")
