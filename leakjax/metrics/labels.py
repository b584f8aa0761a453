"""Label metrics: accuracy on aligned labels, per-class counts and the order-free accuracy of
inferred label counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from leakjax.metrics._checks import as_labels
from leakjax.types import ConfigError


def label_accuracy(pred: Any, true: Any) -> float:
    """Fraction of positions where ``pred == true`` (the caller aligns them first).

    Args:
        pred: Predicted labels [N] (or scores [N, C], argmax-ed).
        true: True labels [N].

    Returns:
        Accuracy in [0, 1].
    """
    pred, true = as_labels(pred, "pred"), as_labels(true, "true")
    if pred.shape != true.shape:
        raise ConfigError(f"pred and true must have the same length, got {pred.size}, {true.size}")
    if true.size == 0:
        raise ConfigError("true must hold at least one label")
    return float(np.mean(pred == true))


def label_counts(labels: Any, num_classes: int) -> np.ndarray:
    """Per-class counts of ``labels``.

    Args:
        labels: Integer labels [N] in ``[0, num_classes)``.
        num_classes: Number of classes.

    Returns:
        int64 array [num_classes].
    """
    labels = as_labels(labels, "labels")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def label_count_accuracy(pred_counts: Any, true_counts: Any) -> float:
    """Order-free accuracy of inferred per-class label counts.

    ``sum(min(pred, true)) / max(sum(pred), sum(true))``: the fraction of the batch whose
    label is accounted for. When the totals agree (the usual case: label-count methods
    know the batch size N) this equals ``1 - 0.5 * sum(|pred - true|) / N``: 1 when the
    counts are equal, 0 when their supports are disjoint. Unlike that formula it stays in
    [0, 1] and is symmetric when the totals differ (too few labels and too many labels
    are both penalised).

    Args:
        pred_counts: Predicted counts [K] (non-negative; may be fractional).
        true_counts: True counts [K].

    Returns:
        Accuracy in [0, 1].
    """
    pred = np.asarray(pred_counts, dtype=np.float64)
    true = np.asarray(true_counts, dtype=np.float64)
    if pred.ndim != 1 or pred.shape != true.shape:
        raise ConfigError(
            f"pred_counts and true_counts must be vectors of one length, got {pred.shape} "
            f"and {true.shape}"
        )
    if not (np.all(np.isfinite(pred)) and np.all(pred >= 0)):
        raise ConfigError("pred_counts must be finite and non-negative")
    if not (np.all(np.isfinite(true)) and np.all(true >= 0)):
        raise ConfigError("true_counts must be finite and non-negative")
    if true.sum() <= 0:
        raise ConfigError("true_counts must sum to a positive number")
    total = max(pred.sum(), true.sum())
    return float(np.minimum(pred, true).sum() / total)
