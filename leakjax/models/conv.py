"""2-D convolution and pooling with interchangeable, twice-differentiable implementations.

XLA's CPU backend runs ``lax.conv_general_dilated`` (and, above all, its gradients with respect
to the input and the kernel) far below the machine's matmul throughput. Gradient-inversion
attacks (DLG, arXiv 1906.08935; Inverting Gradients, arXiv 2003.14053; DLF, arXiv 2202.05165)
differentiate through gradients of convolutional networks thousands of times, so the
convolution's speed decides how long an attack takes. This module offers the same convolution
computed in several ways; all of them are built from pure ``jnp``/``lax`` ops, so they can be
differentiated any number of times (in particular grad-of-grad with respect to the input):

- ``"xla"``: ``lax.conv_general_dilated`` (the reference; the fastest on GPU).
- ``"im2col"``: pad, take the ``kh * kw`` shifted (strided) windows with ``lax.slice``,
  concatenate them along channels and do one matmul with the kernel reshaped to
  ``[kh * kw * cin, cout]``. The backward pass is one matmul per operand plus pads/adds.
- ``"patches"``: the same matmul, with ``lax.conv_general_dilated_patches`` building the patches.
- ``"shifted"``: the sum of ``kh * kw`` matmuls, one per shifted window (no patch tensor).

``"auto"`` picks per backend (:func:`resolve_impl`) the one measured fastest by
``python -m benchmarks.conv_impl`` (see BUILD_NOTES.md). Pooling has the same choice
(:func:`max_pool`, :func:`avg_pool`): non-overlapping windows that tile the input are computed
as a reshape and a reduction, which avoids XLA's ``select_and_scatter`` gradient of
``reduce_window``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from leakjax.types import Array, ConfigError

IMPLS = ("auto", "xla", "im2col", "patches", "shifted")

# Measured fastest on each backend (benchmarks/conv_impl.py); anything not listed uses "xla".
_AUTO = {"cpu": "im2col"}

Padding = str | int | Sequence[tuple[int, int]]


def resolve_impl(impl: str) -> str:
    """Returns the concrete implementation name for ``impl`` ("auto" resolved per backend).

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


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def explicit_padding(
    padding: Padding, in_hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Converts "SAME"/"VALID"/an int/per-axis pairs to explicit ``((lo, hi), (lo, hi))``.

    "SAME" follows XLA/TensorFlow (output size ``ceil(in / stride)``, extra padding at the end).

    Raises:
        ConfigError: an unknown padding string.
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0), (0, 0))
        if mode != "SAME":
            raise ConfigError(f"padding={padding!r} is not one of SAME, VALID, int, pairs")
        pads = []
        for n, k, s in zip(in_hw, kernel, strides, strict=True):
            out = -(-n // s)
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return (pads[0], pads[1])
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def _windows(
    x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int], pads
) -> tuple[list[Array], int, int]:
    """The ``kh * kw`` strided windows of padded ``x`` (row-major over the kernel)."""
    kh, kw = kernel_hw
    sh, sw = strides
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    b, h, w, c = x.shape
    ho = (h - kh) // sh + 1
    wo = (w - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ConfigError(f"conv input {h}x{w} (padded) is smaller than the kernel {kh}x{kw}")
    wins = []
    for i in range(kh):
        for j in range(kw):
            wins.append(
                lax.slice(
                    x,
                    (0, i, j, 0),
                    (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1),
                )
            )
    return wins, ho, wo


def conv2d(
    x: Array,
    kernel: Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    impl: str = "auto",
) -> Array:
    """2-D cross-correlation of NHWC ``x`` with an HWIO ``kernel`` (as ``torch.nn.Conv2d``).

    Args:
        x: input ``[B, H, W, Cin]``.
        kernel: ``[kh, kw, Cin, Cout]``.
        strides: an int or ``(sh, sw)``.
        padding: "SAME", "VALID", an int (symmetric) or ``((lo, hi), (lo, hi))``.
        impl: one of :data:`IMPLS`.

    Returns:
        ``[B, Ho, Wo, Cout]``; every impl gives the same values up to float32 rounding.
    """
    impl = resolve_impl(impl)
    kh, kw, cin, cout = kernel.shape
    strides = _pair(strides)
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    if impl == "xla":
        return lax.conv_general_dilated(
            x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if impl == "patches":
        patches = lax.conv_general_dilated_patches(
            x, (kh, kw), strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        # Patch features are ordered (cin, kh, kw).
        w = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * kh * kw, cout)
        return patches @ w
    if kh == kw == 1 and impl in ("im2col", "shifted"):
        wins, _, _ = _windows(x, (1, 1), strides, pads)
        return wins[0] @ kernel.reshape(cin, cout)
    wins, _, _ = _windows(x, (kh, kw), strides, pads)
    if impl == "im2col":
        patches = jnp.concatenate(wins, axis=-1)
        return patches @ kernel.reshape(kh * kw * cin, cout)
    if impl == "shifted":
        taps = kernel.reshape(kh * kw, cin, cout)
        out = wins[0] @ taps[0]
        for t in range(1, kh * kw):
            out = out + wins[t] @ taps[t]
        return out
    raise AssertionError(impl)


def _tiles(x: Array, window: tuple[int, int], strides: tuple[int, int], padding) -> bool:
    pads = explicit_padding(padding, x.shape[1:3], window, strides)
    no_pad = not any(p for pair in pads for p in pair)
    return no_pad and tuple(window) == tuple(strides)


def _blocks(x: Array, window: tuple[int, int]) -> Array:
    b, h, w, c = x.shape
    kh, kw = window
    ho, wo = h // kh, w // kw
    x = x[:, : ho * kh, : wo * kw, :]
    return x.reshape(b, ho, kh, wo, kw, c)


def max_pool(
    x: Array,
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    impl: str = "auto",
) -> Array:
    """Max pooling over NHWC ``x`` (``torch.nn.MaxPool2d`` with floor mode).

    With ``impl`` other than "xla" and non-overlapping windows (``window == strides``, no
    padding), the pool is a reshape plus a max reduction. Its gradient splits evenly among tied
    maxima where ``reduce_window``'s picks one; the two agree wherever the maximum is unique.
    """
    window = _pair(window)
    strides = window if strides is None else _pair(strides)
    if resolve_impl(impl) != "xla" and _tiles(x, window, strides, padding):
        return jnp.max(_blocks(x, window), axis=(2, 4))
    return nn.max_pool(x, window, strides, padding)


def avg_pool(
    x: Array,
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    impl: str = "auto",
) -> Array:
    """Average pooling over NHWC ``x`` (``torch.nn.AvgPool2d``, padding counted as zeros)."""
    window = _pair(window)
    strides = window if strides is None else _pair(strides)
    if resolve_impl(impl) != "xla" and _tiles(x, window, strides, padding):
        return jnp.mean(_blocks(x, window), axis=(2, 4))
    return nn.avg_pool(x, window, strides, padding, count_include_pad=True)


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` averaging matrix of ``torch.nn.AdaptiveAvgPool`` along one axis."""
    m = np.zeros((n_out, n_in), np.float32)
    for k in range(n_out):
        lo = (k * n_in) // n_out
        hi = -(-((k + 1) * n_in) // n_out)
        m[k, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x: Array, output_hw: int | Sequence[int]) -> Array:
    """``torch.nn.AdaptiveAvgPool2d`` on NHWC ``x``: bin ``k`` averages rows
    ``[floor(k * n / o), ceil((k + 1) * n / o))``, so it also upsamples (1x1 -> 7x7 replicates).
    """
    oh, ow = _pair(output_hw)
    _, h, w, _ = x.shape
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:
        return jnp.mean(_blocks(x, (h // oh, w // ow)), axis=(2, 4))
    mh = jnp.asarray(_adaptive_matrix(h, oh))
    mw = jnp.asarray(_adaptive_matrix(w, ow))
    return jnp.einsum("ph,bhwc,qw->bpqc", mh, x, mw)


def torch_uniform_init(fan_in: int) -> nn.initializers.Initializer:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: torch's default for Conv/Linear weights
    (``kaiming_uniform_(a=sqrt(5))``) and biases."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """2-D convolution with ``nn.Conv``'s parameter layout and torch's default init.

    Parameters: ``kernel [kh, kw, Cin, Cout]`` and (if ``use_bias``) ``bias [Cout]``.

    Attributes:
        features: output channels.
        kernel_size: an int or ``(kh, kw)``.
        strides: an int or ``(sh, sw)``.
        padding: "SAME", "VALID", an int or explicit pairs.
        use_bias: add a bias.
        impl: convolution implementation, one of :data:`IMPLS`.
        kernel_init: overrides torch's ``U(+-1/sqrt(fan_in))`` kernel init.
        bias_init: overrides torch's ``U(+-1/sqrt(fan_in))`` bias init.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: nn.initializers.Initializer | None = None
    bias_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = _pair(self.kernel_size)
        cin = x.shape[-1]
        default = torch_uniform_init(kh * kw * cin)
        kernel = self.param(
            "kernel", self.kernel_init or default, (kh, kw, cin, self.features), jnp.float32
        )
        y = conv2d(x, kernel, self.strides, self.padding, self.impl)
        if self.use_bias:
            bias = self.param("bias", self.bias_init or default, (self.features,), jnp.float32)
            y = y + bias
        return y


def dense(
    x: Array,
    features: int,
    name: str | None = None,
    kernel_init: nn.initializers.Initializer | None = None,
    bias_init: nn.initializers.Initializer | None = None,
) -> Array:
    """Applies an ``nn.Dense`` with torch's ``nn.Linear`` default init (call inside compact)."""
    default = torch_uniform_init(x.shape[-1])
    layer = nn.Dense(
        features,
        kernel_init=kernel_init or default,
        bias_init=bias_init or default,
        name=name,
    )
    return layer(x)
