"""iDLG's label rule (Zhao et al. 2020, "iDLG: Improved Deep Leakage from Gradients",
https://arxiv.org/abs/2001.02610).

For one sample with cross-entropy loss, the last layer's weight gradient is
dW[:, c] = h * (p_c - y_c). When the layer's inputs h are non-negative (after a
ReLU or sigmoid), column c of dW is non-positive exactly for the true class and
non-negative for every other, so the true label is the column with the smallest
sum. The same holds for a FedAvg update (params_before - params_after) of a
one-sample client trained with plain SGD: every step adds lr * h_t (p_t - y), whose
sign pattern is the same at every step (momentum only re-weights the steps).
"""

from __future__ import annotations

import jax.numpy as jnp

from leakjax.types import Array


def head_update(update) -> dict:
    """The last layer ('head') of a params-shaped update pytree."""
    if "head" not in update:
        raise KeyError(
            "the model has no layer named 'head' (leakjax models name their last Dense 'head')"
        )
    return update["head"]


def idlg_label(update) -> Array:
    """The label of a single sample from a gradient / FedAvg update (int32 scalar).

    Uses the column sums of the head's kernel update ([F, C]); falls back to the bias
    update when the kernel is absent.
    """
    head = head_update(update)
    if "kernel" in head:
        score = jnp.sum(head["kernel"], axis=0)
    else:
        score = head["bias"]
    return jnp.argmin(score).astype(jnp.int32)
