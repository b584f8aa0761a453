"""Max, average and adaptive-average pooling over NHWC arrays, as torch's ``nn.*Pool2d``.

Pooling takes the convolutions' ``impl`` (:data:`leakjax.models.conv.IMPLS`): with anything but
"xla", non-overlapping windows are a reshape and a reduction instead of ``reduce_window``
(whose max gradient is ``select_and_scatter``, slow on XLA:CPU when differentiated twice, as
gradient-inversion attacks do: DLG, arXiv 1906.08935; Inverting Gradients, arXiv 2003.14053).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from leakjax.models.conv import Padding, explicit_padding, pair, resolve_impl
from leakjax.types import Array


def _tiles(x: Array, window: tuple[int, int], strides: tuple[int, int], padding) -> bool:
    pads = explicit_padding(padding, x.shape[1:3], window, strides)
    return not any(p for pair in pads for p in pair) and tuple(window) == tuple(strides)


def _blocks(x: Array, window: tuple[int, int]) -> Array:
    b, h, w, c = x.shape
    kh, kw = window
    ho, wo = h // kh, w // kw
    if (ho * kh, wo * kw) != (h, w):  # floor mode: drop the last rows / columns
        x = x[:, : ho * kh, : wo * kw, :]
    return x.reshape(b, ho, kh, wo, kw, c)


def max_pool(
    x: Array,
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    impl: str = "auto",
) -> Array:
    """Max pooling over NHWC ``x``, as ``torch.nn.MaxPool2d`` (floor mode).

    With ``impl`` other than "xla" and non-overlapping windows (``window == strides``, no
    padding), the pool is a reshape and a max reduction. Its gradient is split evenly among tied
    maxima where ``reduce_window``'s goes to one of them; they agree where the max is unique.
    """
    window = pair(window)
    strides = window if strides is None else pair(strides)
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
    """Average pooling over NHWC ``x``, as ``torch.nn.AvgPool2d`` (padding counts as zeros)."""
    window = pair(window)
    strides = window if strides is None else pair(strides)
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
    """``torch.nn.AdaptiveAvgPool2d`` on NHWC ``x``.

    Output bin ``k`` of an axis of length ``n`` averages ``[floor(k n / o), ceil((k + 1) n / o))``,
    so ``o > n`` upsamples by replication (1x1 -> 7x7 copies the one value).
    """
    oh, ow = pair(output_hw)
    _, h, w, _ = x.shape
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:
        return jnp.mean(_blocks(x, (h // oh, w // ow)), axis=(2, 4))
    mh = jnp.asarray(_adaptive_matrix(h, oh))
    mw = jnp.asarray(_adaptive_matrix(w, ow))
    return jnp.einsum("ph,bhwc,qw->bpqc", mh, x, mw)
