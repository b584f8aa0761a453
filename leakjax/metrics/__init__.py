"""Reconstruction and label-inference metrics for privacy attacks.

The reference implementation of "Privacy Attack in Federated Learning is Not Easy"
(https://arxiv.org/abs/2409.19301) computes no metrics; this package supplies the usual
ones from the gradient-inversion literature (one module per concern: `images`, `matching`,
`labels`, `evaluation`):

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

from leakjax.metrics.evaluation import DEFAULT_THRESHOLD, evaluate, success_rate, summarize
from leakjax.metrics.images import PSNR_CAP, mse, pairwise_mse, psnr, ssim
from leakjax.metrics.labels import label_accuracy, label_count_accuracy, label_counts
from leakjax.metrics.matching import match

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
