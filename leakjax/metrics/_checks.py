"""Input checks shared by the metrics modules (private): each converts or raises ConfigError."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from leakjax.types import ConfigError


def as_images(x: Any, name: str) -> np.ndarray:
    """Converts ``x`` to a float NHWC NumPy array, or raises ConfigError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise ConfigError(f"{name} must be NHWC images (rank 4), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        # uint8 images would silently be compared on a 0..255 scale.
        raise ConfigError(f"{name} must be float images in [0, 1], got dtype {arr.dtype}")
    return arr


def same_shape(a: np.ndarray, b: np.ndarray, names: str = "a and b") -> None:
    if a.shape != b.shape:
        raise ConfigError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def as_labels(x: Any, name: str) -> np.ndarray:
    """Converts hard labels [N] (or soft labels / logits [N, C], argmax-ed) to int64."""
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = np.argmax(arr, axis=-1)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be labels [N] or scores [N, C], got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ConfigError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def finite_float(x: Any, name: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    return value
