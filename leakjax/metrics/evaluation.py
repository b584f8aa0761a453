"""Scoring an attacked batch: :func:`evaluate` (matching + image and label metrics of one
batch), :func:`summarize` (pooled over clients / trials) and :func:`success_rate`.

The result of :func:`evaluate` and :func:`summarize` is JSON-serialisable with
``allow_nan=False``: no NaN or Inf ever reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from leakjax.metrics._checks import as_images, as_labels, finite_float
from leakjax.metrics.images import PSNR_CAP, mse, psnr, ssim
from leakjax.metrics.labels import label_accuracy, label_count_accuracy, label_counts
from leakjax.metrics.matching import match
from leakjax.types import ConfigError

#: Default success threshold (dB) for :func:`success_rate` and :func:`evaluate`.
DEFAULT_THRESHOLD = 19.0


def _stat(fn, values: np.ndarray) -> float:
    """A finite statistic of ``values`` (0.0 when there are none)."""
    return float(fn(values)) if values.size else 0.0


def success_rate(psnr_values: Any, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of ``psnr_values`` at or above ``threshold`` dB (NaN counts as failure).

    Args:
        psnr_values: PSNR values [N].
        threshold: Success threshold in dB.

    Returns:
        Fraction in [0, 1] (0.0 for an empty input).
    """
    threshold = finite_float(threshold, "threshold")
    values = np.asarray(psnr_values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return 0.0
    return float(np.mean(values >= threshold))


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
    recon, truth = as_images(recon, "recon"), as_images(truth, "truth")
    threshold = finite_float(threshold, "threshold")
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
        rl, tl = as_labels(recon_labels, "recon_labels"), as_labels(truth_labels, "truth_labels")
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
