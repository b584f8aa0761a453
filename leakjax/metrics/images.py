"""Per-image reconstruction quality in [0, 1] image space (NHWC, float): MSE, PSNR, SSIM, and
the pairwise MSE that matching minimises."""

from __future__ import annotations

import functools
from typing import Any

import dm_pix
import jax
import numpy as np

from leakjax.metrics._checks import as_images, finite_float, same_shape
from leakjax.types import ConfigError

#: PSNR (dB) reported for identical images (MSE == 0), so that means stay finite.
PSNR_CAP = 100.0


def mse(a: Any, b: Any) -> np.ndarray:
    """Per-image mean squared error.

    Args:
        a: Images [N, H, W, C], float.
        b: Images of the same shape.

    Returns:
        float64 array [N]; NaN where an image holds NaN.
    """
    a, b = as_images(a, "a"), as_images(b, "b")
    same_shape(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return np.mean(diff * diff, axis=(1, 2, 3))


def psnr(a: Any, b: Any, max_val: float = 1.0) -> np.ndarray:
    """Per-image peak signal-to-noise ratio, ``10 * log10(max_val**2 / mse)`` in dB.

    Same formula as ``dm_pix.psnr`` (which fixes ``max_val = 1``), computed in float64
    NumPy so that tiny errors are not rounded away. Identical images (MSE == 0) give
    :data:`PSNR_CAP` (100 dB) instead of +inf, and every value is capped there, so that
    means over images stay finite. NaN images give NaN (see :func:`evaluate`, which
    reports them as failures).

    Args:
        a: Images [N, H, W, C], float in [0, max_val].
        b: Images of the same shape.
        max_val: Dynamic range of the images.

    Returns:
        float64 array [N].
    """
    max_val = finite_float(max_val, "max_val")
    if max_val <= 0:
        raise ConfigError(f"max_val must be > 0, got {max_val}")
    err = mse(a, b)
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(max_val**2 / err)
    return np.minimum(value, PSNR_CAP)  # np.minimum keeps NaN


@functools.partial(jax.jit, static_argnames=("filter_size", "max_val"))
def _ssim_jit(a, b, *, filter_size: int, max_val: float):
    return dm_pix.ssim(a, b, max_val=max_val, filter_size=filter_size)


def ssim(a: Any, b: Any, max_val: float = 1.0) -> np.ndarray:
    """Per-image structural similarity (``dm_pix.ssim``, Gaussian window, sigma 1.5).

    The window is ``filter_size = min(11, H, W)``: the standard 11x11 window for images of
    at least 11x11 pixels (CIFAR, MNIST, ImageNet crops), and the whole image for smaller
    ones (an 8x8 image gets one 8x8 window, i.e. a single global SSIM value), so tiny test
    images still get a meaningful score. Computed in float32 under ``jax.jit``.

    Args:
        a: Images [N, H, W, C], float in [0, max_val]; C = 1 (gray) or 3 (RGB).
        b: Images of the same shape.
        max_val: Dynamic range of the images.

    Returns:
        float64 array [N] of values in [-1, 1]; 1 for identical images.
    """
    a, b = as_images(a, "a"), as_images(b, "b")
    same_shape(a, b)
    max_val = finite_float(max_val, "max_val")
    if a.shape[0] == 0:
        return np.zeros((0,), np.float64)
    filter_size = int(min(11, a.shape[1], a.shape[2]))
    out = _ssim_jit(
        a.astype(np.float32), b.astype(np.float32), filter_size=filter_size, max_val=max_val
    )
    return np.asarray(out, dtype=np.float64)


def pairwise_mse(recon: Any, truth: Any) -> np.ndarray:
    """MSE between every reconstruction and every ground-truth image.

    Args:
        recon: Images [M, H, W, C].
        truth: Images [N, H, W, C].

    Returns:
        float64 array [M, N]; entry [i, j] is ``mse(recon[i], truth[j])``. Rows of
        reconstructions that hold NaN/Inf are +inf.
    """
    recon, truth = as_images(recon, "recon"), as_images(truth, "truth")
    if recon.shape[1:] != truth.shape[1:]:
        raise ConfigError(
            f"recon and truth must have the same image shape, got {recon.shape[1:]} "
            f"and {truth.shape[1:]}"
        )
    d = int(np.prod(recon.shape[1:]))
    r = recon.reshape(recon.shape[0], d).astype(np.float64)
    t = truth.reshape(truth.shape[0], d).astype(np.float64)
    bad = ~np.all(np.isfinite(r), axis=1)
    r = np.where(bad[:, None], 0.0, r)
    # |r - t|^2 = |r|^2 + |t|^2 - 2 r.t, in float64 (no [M, N, D] intermediate).
    sq = (r * r).sum(1)[:, None] + (t * t).sum(1)[None, :] - 2.0 * (r @ t.T)
    out = np.maximum(sq, 0.0) / max(d, 1)
    out[bad] = np.inf
    return out
