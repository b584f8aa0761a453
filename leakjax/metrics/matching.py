"""Host-side Hungarian matching of reconstructions to ground-truth images on pairwise MSE
(scipy, float64), for attacks that do not know the order of the batch. The traced (jit-able)
counterpart for objectives is :mod:`leakjax.matching`."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from leakjax.metrics.images import pairwise_mse


def match(recon: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of reconstructions to ground-truth images.

    Hungarian matching (``scipy.optimize.linear_sum_assignment``) minimising the total
    pairwise MSE. M != N is allowed: ``min(M, N)`` pairs are returned, the surplus
    reconstructions (M > N) or ground-truth images (M < N) stay unmatched. Non-finite
    reconstructions get the highest cost, so they are only matched when there is no
    finite one left.

    Args:
        recon: Images [M, H, W, C].
        truth: Images [N, H, W, C].

    Returns:
        ``(recon_idx, truth_idx)``: int64 arrays [min(M, N)], sorted by ``truth_idx``.
    """
    cost = pairwise_mse(recon, truth)
    if cost.size == 0:
        return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
    finite = np.isfinite(cost)
    if not finite.all():
        worst = cost[finite].max() if finite.any() else 0.0
        cost = np.where(finite, cost, 2.0 * worst + 1.0)
    rows, cols = linear_sum_assignment(cost)
    order = np.argsort(cols, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)
