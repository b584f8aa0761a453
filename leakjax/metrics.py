"""Reconstruction and label-inference metrics for privacy attacks.

The reference implementation of "Privacy Attack in Federated Learning is Not Easy"
(https://arxiv.org/abs/2409.19301) computes no metrics; this module supplies the usual
ones from the gradient-inversion literature:

- per-image MSE, PSNR and SSIM in [0, 1] image space (NHWC, float);
- Hungarian matching of reconstructions to ground-truth images on pairwise MSE, for
  attacks that do not know the order of the batch (any attack with batch size > 1);
- label accuracy (on matched pairs) and label-count accuracy (order-free);
- the success rate: the fraction of ground-truth images recovered at a PSNR of at
  least ``threshold`` dB.

All functions take NumPy or JAX arrays and return NumPy arrays or Python floats. The
result of :func:`evaluate` and :func:`summarize` is JSON-serialisable with
``allow_nan=False``: no NaN or Inf ever reaches it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import dm_pix
import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from leakjax.types import ConfigError

#: PSNR (dB) reported for identical images (MSE == 0), so that means stay finite.
PSNR_CAP = 100.0
#: Default success threshold (dB) for :func:`success_rate` and :func:`evaluate`.
DEFAULT_THRESHOLD = 19.0

__all__ = [
    "DEFAULT_THRESHOLD",
    "PSNR_CAP",
    "evaluate",
    "label_accuracy",
    "label_count_accuracy",
    "label_counts",
    "match",
    "mse",
    "pairwise_mse",
    "psnr",
    "success_rate",
    "ssim",
    "summarize",
]


# --------------------------------------------------------------------------- helpers


def _images(x: Any, name: str) -> np.ndarray:
    """Converts ``x`` to a float NHWC NumPy array, or raises ConfigError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise ConfigError(f"{name} must be NHWC images (rank 4), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        # uint8 images would silently be compared on a 0..255 scale.
        raise ConfigError(f"{name} must be float images in [0, 1], got dtype {arr.dtype}")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str = "a and b") -> None:
    if a.shape != b.shape:
        raise ConfigError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _labels(x: Any, name: str) -> np.ndarray:
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


def _finite_float(x: Any, name: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    return value


def _stat(fn, values: np.ndarray) -> float:
    """A finite statistic of ``values`` (0.0 when there are none)."""
    return float(fn(values)) if values.size else 0.0


# --------------------------------------------------------------------------- image metrics


def mse(a: Any, b: Any) -> np.ndarray:
    """Per-image mean squared error.

    Args:
        a: Images [N, H, W, C], float.
        b: Images of the same shape.

    Returns:
        float64 array [N]; NaN where an image holds NaN.
    """
    a, b = _images(a, "a"), _images(b, "b")
    _same_shape(a, b)
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
    max_val = _finite_float(max_val, "max_val")
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
    a, b = _images(a, "a"), _images(b, "b")
    _same_shape(a, b)
    max_val = _finite_float(max_val, "max_val")
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
    recon, truth = _images(recon, "recon"), _images(truth, "truth")
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


# --------------------------------------------------------------------------- label metrics


def label_accuracy(pred: Any, true: Any) -> float:
    """Fraction of positions where ``pred == true`` (the caller aligns them first).

    Args:
        pred: Predicted labels [N] (or scores [N, C], argmax-ed).
        true: True labels [N].

    Returns:
        Accuracy in [0, 1].
    """
    pred, true = _labels(pred, "pred"), _labels(true, "true")
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
    labels = _labels(labels, "labels")
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


def success_rate(psnr_values: Any, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of ``psnr_values`` at or above ``threshold`` dB (NaN counts as failure).

    Args:
        psnr_values: PSNR values [N].
        threshold: Success threshold in dB.

    Returns:
        Fraction in [0, 1] (0.0 for an empty input).
    """
    threshold = _finite_float(threshold, "threshold")
    values = np.asarray(psnr_values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return 0.0
    return float(np.mean(values >= threshold))


# --------------------------------------------------------------------------- evaluation


def evaluate(
    recon: Any,
    truth: Any,
    *,
    recon_labels: Any = None,
    truth_labels: Any = None,
    ordered: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """All metrics of one attacked batch, as a JSON-serialisable dict.

    Pairing: with ``ordered=True``, ``recon[i]`` is compared with ``truth[i]`` (attacks
    that know the order, e.g. batch size 1; requires M == N). Otherwise reconstructions
    are Hungarian-matched to ground truth on pairwise MSE (:func:`match`); with M != N,
    ``min(M, N)`` pairs are formed.

    Finite reconstructions are clipped to [0, 1] first (what an attacker would display).
    A reconstruction holding NaN/Inf is never matched while finite ones are left; when it
    is matched it is reported as failed with ``psnr = 0.0``, ``ssim = 0.0``,
    ``mse = 1.0``, and counted in ``nonfinite`` (the number of such reconstructions among
    all M). No NaN or Inf ever appears in the result.

    Keys: ``psnr``, ``ssim``, ``mse`` (lists over the matched pairs, in increasing
    ``truth_idx``); ``psnr_mean``, ``psnr_median``, ``psnr_max``, ``ssim_mean``,
    ``mse_mean`` (over the matched pairs; 0.0 when there are none); ``success_rate``
    (matched pairs with PSNR >= threshold divided by N: unmatched ground-truth images
    count as failures) and ``num_success``; ``threshold``, ``ordered``, ``num_recon``,
    ``num_truth``, ``num_matched``, ``nonfinite``; ``matching`` (list of
    ``[recon_idx, truth_idx]``); and, when labels are given, ``label_accuracy`` (on the
    matched pairs; 0.0 when none) and ``label_count_accuracy`` (all M predicted labels
    against all N true ones, see :func:`label_count_accuracy`).

    Args:
        recon: Reconstructed images [M, H, W, C], float.
        truth: Ground-truth images [N, H, W, C], float in [0, 1], N >= 1.
        recon_labels: Labels [M] (or scores [M, C]) attached to the reconstructions.
        truth_labels: True labels [N]; required together with ``recon_labels``.
        ordered: Compare by index instead of matching.
        threshold: PSNR success threshold in dB.
        num_classes: Number of classes for label counts (default: largest label + 1).

    Returns:
        The metrics dict described above.
    """
    recon, truth = _images(recon, "recon"), _images(truth, "truth")
    threshold = _finite_float(threshold, "threshold")
    if truth.shape[0] == 0:
        raise ConfigError("truth must hold at least one image")
    if recon.shape[1:] != truth.shape[1:]:
        raise ConfigError(
            f"recon and truth must have the same image shape, got {recon.shape[1:]} "
            f"and {truth.shape[1:]}"
        )
    if not np.all(np.isfinite(truth)):
        raise ConfigError("truth must be finite")
    num_recon, num_truth = int(recon.shape[0]), int(truth.shape[0])

    finite = np.all(np.isfinite(recon), axis=(1, 2, 3))
    clean = np.where(finite[:, None, None, None], np.clip(recon, 0.0, 1.0), np.nan)
    clean = clean.astype(np.float32)

    if ordered:
        if num_recon != num_truth:
            raise ConfigError(
                f"ordered=True needs as many reconstructions as truths, got {num_recon} "
                f"and {num_truth}"
            )
        recon_idx = np.arange(num_recon, dtype=np.int64)
        truth_idx = np.arange(num_truth, dtype=np.int64)
    else:
        recon_idx, truth_idx = match(clean, truth)

    pr, pt = clean[recon_idx], truth[truth_idx].astype(np.float32)
    ok = finite[recon_idx]
    safe = np.where(ok[:, None, None, None], pr, 0.0).astype(np.float32)
    psnr_v = np.where(ok, psnr(safe, pt), 0.0)
    ssim_v = np.where(ok, ssim(safe, pt), 0.0)
    mse_v = np.where(ok, mse(safe, pt), 1.0)
    # Belt and braces: nothing non-finite leaves this function.
    psnr_v = np.nan_to_num(psnr_v, nan=0.0, posinf=PSNR_CAP, neginf=0.0)
    ssim_v = np.nan_to_num(ssim_v, nan=0.0, posinf=0.0, neginf=0.0)
    mse_v = np.nan_to_num(mse_v, nan=1.0, posinf=1.0, neginf=1.0)

    num_success = int(np.sum(psnr_v >= threshold))
    result: dict[str, Any] = {
        "psnr": [float(v) for v in psnr_v],
        "ssim": [float(v) for v in ssim_v],
        "mse": [float(v) for v in mse_v],
        "psnr_mean": _stat(np.mean, psnr_v),
        "psnr_median": _stat(np.median, psnr_v),
        "psnr_max": _stat(np.max, psnr_v),
        "ssim_mean": _stat(np.mean, ssim_v),
        "mse_mean": _stat(np.mean, mse_v),
        "success_rate": num_success / num_truth,
        "num_success": num_success,
        "threshold": threshold,
        "ordered": bool(ordered),
        "num_recon": num_recon,
        "num_truth": num_truth,
        "num_matched": int(recon_idx.size),
        "nonfinite": int(np.sum(~finite)),
        "matching": [[int(r), int(t)] for r, t in zip(recon_idx, truth_idx, strict=True)],
    }

    if (recon_labels is None) != (truth_labels is None):
        missing = "truth_labels" if truth_labels is None else "recon_labels"
        raise ConfigError(f"{missing} must be given together with the other labels")
    if recon_labels is not None:
        rl, tl = _labels(recon_labels, "recon_labels"), _labels(truth_labels, "truth_labels")
        if rl.size != num_recon:
            raise ConfigError(f"recon_labels must have {num_recon} entries, got {rl.size}")
        if tl.size != num_truth:
            raise ConfigError(f"truth_labels must have {num_truth} entries, got {tl.size}")
        if num_classes is None:
            num_classes = int(max(rl.max(initial=0), tl.max(initial=0))) + 1
        result["label_accuracy"] = (
            label_accuracy(rl[recon_idx], tl[truth_idx]) if recon_idx.size else 0.0
        )
        result["label_count_accuracy"] = label_count_accuracy(
            label_counts(rl, num_classes), label_counts(tl, num_classes)
        )
    return result


_REQUIRED = ("psnr", "ssim", "mse", "threshold", "num_recon", "num_truth", "num_matched")


def summarize(per_client: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates :func:`evaluate` dicts over several attacked clients / trials.

    Image metrics are pooled over all matched images of all runs (``psnr_mean``,
    ``psnr_median``, ``psnr_max``, ``psnr_std``, ``ssim_mean``, ``mse_mean``);
    ``success_rate`` is all successes over all ground-truth images. ``label_accuracy`` is
    pooled over all matched pairs (runs weighted by ``num_matched``), while
    ``label_count_accuracy`` is the plain mean over runs (it is a per-batch quantity);
    both appear only if some run has them, with ``num_labelled_runs``. Also returns the
    summed counts and ``psnr_mean_per_run``.

    Args:
        per_client: Non-empty list of :func:`evaluate` results, all with one threshold.

    Returns:
        A JSON-serialisable dict.
    """
    runs = list(per_client)
    if not runs:
        raise ConfigError("per_client must hold at least one evaluate() result")
    for i, run in enumerate(runs):
        for key in _REQUIRED:
            if key not in run:
                raise ConfigError(f"per_client[{i}] lacks key {key!r} (not an evaluate() result)")
    thresholds = {float(r["threshold"]) for r in runs}
    if len(thresholds) != 1:
        raise ConfigError(f"per_client mixes success thresholds {sorted(thresholds)}")
    threshold = thresholds.pop()

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([np.asarray(r[key], dtype=np.float64).reshape(-1) for r in runs])

    psnr_v, ssim_v, mse_v = pooled("psnr"), pooled("ssim"), pooled("mse")
    num_truth = int(sum(r["num_truth"] for r in runs))
    num_success = int(np.sum(psnr_v >= threshold))
    out: dict[str, Any] = {
        "num_runs": len(runs),
        "num_recon": int(sum(r["num_recon"] for r in runs)),
        "num_truth": num_truth,
        "num_matched": int(sum(r["num_matched"] for r in runs)),
        "nonfinite": int(sum(r.get("nonfinite", 0) for r in runs)),
        "threshold": threshold,
        "psnr_mean": _stat(np.mean, psnr_v),
        "psnr_median": _stat(np.median, psnr_v),
        "psnr_max": _stat(np.max, psnr_v),
        "psnr_std": _stat(np.std, psnr_v),
        "ssim_mean": _stat(np.mean, ssim_v),
        "mse_mean": _stat(np.mean, mse_v),
        "success_rate": num_success / num_truth if num_truth else 0.0,
        "num_success": num_success,
        "psnr_mean_per_run": [_stat(np.mean, np.asarray(r["psnr"], np.float64)) for r in runs],
    }
    labelled = [r for r in runs if "label_accuracy" in r]
    if labelled:
        weights = np.array([r["num_matched"] for r in labelled], dtype=np.float64)
        accs = np.array([r["label_accuracy"] for r in labelled], dtype=np.float64)
        out["label_accuracy"] = (
            float(np.sum(weights * accs) / weights.sum()) if weights.sum() else 0.0
        )
        out["num_labelled_runs"] = len(labelled)
    counted = [r["label_count_accuracy"] for r in runs if "label_count_accuracy" in r]
    if counted:
        out["label_count_accuracy"] = float(np.mean(counted))
    return out
