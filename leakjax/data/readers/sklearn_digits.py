"""scikit-learn's 8x8 hand-written digits (offline), and random images for shape tests."""

from __future__ import annotations

import numpy as np

from leakjax.data.base import _Arrays, _resize

DIGIT_NAMES = tuple(str(i) for i in range(10))


def read_digits(size: int, seed: int) -> _Arrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    images = _resize(images, size)
    order = np.random.default_rng(seed).permutation(images.shape[0])
    cut = int(0.8 * images.shape[0])
    train, test = order[:cut], order[cut:]
    labels = digits.target
    return _Arrays(images[train], labels[train], images[test], labels[test], DIGIT_NAMES)


def make_synthetic(size: int, seed: int) -> _Arrays:
    rng = np.random.default_rng(seed)
    return _Arrays(
        rng.integers(0, 256, (512, size, size, 3), dtype=np.uint8),
        rng.integers(0, 10, 512),
        rng.integers(0, 256, (128, size, size, 3), dtype=np.uint8),
        rng.integers(0, 10, 128),
        DIGIT_NAMES,
    )
