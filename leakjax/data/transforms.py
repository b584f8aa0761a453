"""Pixel normalization with a data set's constants, its inverse, and the valid-pixel box.

Images enter the library as uint8 NHWC and are normalized per channel as
``(x / 255 - mean) / std``. Three conventions are offered (``mode``):

- ``'dataset'``: the data set's own constants (CIFAR-10, MNIST, ImageNet, ... or,
  for data sets without published constants, statistics of the training split);
- ``'half'``: mean = std = 0.5 per channel, i.e. pixels in [-1, 1], which is what
  the reference implementation's ``--normalize`` flag does;
- ``'none'``: mean 0, std 1, i.e. pixels in [0, 1].

Every function here works on numpy arrays and on jax arrays (also under ``jit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from leakjax.types import ConfigError

if TYPE_CHECKING:
    from leakjax.data.base import DatasetInfo

MODES = ("dataset", "half", "none")


def normalization(info: DatasetInfo, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel normalization constants for a data set.

    Args:
        info: the data set's description (its channel count and constants).
        mode: ``'dataset'`` (the data set's mean/std), ``'half'`` (0.5 / 0.5) or
            ``'none'`` (0 / 1).

    Returns:
        ``(mean, std)``, float32 arrays of shape ``[C]``.

    Raises:
        ConfigError: ``mode`` is not one of the allowed values.
    """
    channels = int(info.image_shape[-1])
    if mode == "dataset":
        mean = np.asarray(info.mean, np.float32)
        std = np.asarray(info.std, np.float32)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise ConfigError(
                f"data set {info.name!r} has {channels} channels but mean/std of length "
                f"{mean.size}/{std.size}"
            )
        return mean, std
    if mode == "half":
        return np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32)
    if mode == "none":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    raise ConfigError(f"data.normalization={mode!r} is unknown; allowed: {', '.join(MODES)}")


def _as_constant(value: Any) -> Any:
    """Leaves arrays (numpy or jax, traced or not) alone; turns sequences into float32."""
    if hasattr(value, "dtype"):
        return value
    return np.asarray(value, np.float32)


def normalize(images: Any, mean: Any, std: Any) -> Any:
    """Maps uint8 pixels to normalized float32: ``(images / 255 - mean) / std``.

    Args:
        images: uint8 (or any numeric) array ``[..., C]`` in 0..255, numpy or jax.
        mean: per-channel mean ``[C]`` in [0, 1] pixel units.
        std: per-channel standard deviation ``[C]``.

    Returns:
        float32 array of the same shape (numpy in, numpy out; jax in, jax out).
    """
    mean, std = _as_constant(mean), _as_constant(std)
    x = images.astype(np.float32) / np.float32(255.0)
    return ((x - mean) / std).astype(np.float32)


def denormalize(x: Any, mean: Any, std: Any) -> Any:
    """Inverse of :func:`normalize` up to the 1/255 scale: ``x * std + mean``.

    The result is in [0, 1] pixel units where ``x`` is a valid image; it is NOT
    clipped, so that reconstructions outside the valid range stay visible to metrics.

    Args:
        x: normalized float array ``[..., C]``.
        mean: per-channel mean ``[C]``.
        std: per-channel standard deviation ``[C]``.

    Returns:
        float array of the same shape, in [0, 1] units.
    """
    mean, std = _as_constant(mean), _as_constant(std)
    return x * std + mean


def box(mean: Any, std: Any) -> tuple[Any, Any]:
    """Per-channel bounds of valid normalized pixels.

    Args:
        mean: per-channel mean ``[C]``.
        std: per-channel standard deviation ``[C]``.

    Returns:
        ``(lo, hi)``, each ``[C]``: the normalized values of pixel 0 and pixel 255,
        i.e. ``(0 - mean) / std`` and ``(1 - mean) / std``.
    """
    mean, std = _as_constant(mean), _as_constant(std)
    return (0.0 - mean) / std, (1.0 - mean) / std
