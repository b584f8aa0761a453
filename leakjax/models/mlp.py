"""Fully connected networks.

- :class:`MLP` ("mlp"): flatten, 200, 200, classes with ReLU (the reference's ``CifarMLP`` /
  ``MnistMLP``).
- :class:`FC2` ("fc2"): flatten, 256 ReLU, classes: the two-layer network whose first layer's
  gradient Cocktail Party Attack inverts (Kariyappa et al., arXiv 2209.05578; the reference's
  ``CifarFC2``). Its first Dense is ``"fc1"``; its kernel rows follow the NHWC flattening, so
  ``kernel[:, j].reshape(H, W, C)`` is an image.
"""

from __future__ import annotations

import flax.linen as nn

from leakjax.models import conv as C
from leakjax.types import Array


class MLP(nn.Module):
    """Flatten, Dense(200) ReLU, Dense(200) ReLU, head.

    Attributes:
        num_classes: logits.
        hidden: widths of the hidden layers (named fc1, fc2, ...).
    """

    num_classes: int
    hidden: tuple[int, ...] = (200, 200)

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        denses = tuple(f"fc{i + 1}" for i in range(len(self.hidden))) + ("head",)
        C.check_tap(return_features, denses)
        x = x.reshape(x.shape[0], -1)
        for width, name in zip(self.hidden, denses, strict=False):
            if return_features == name:
                return x
            x = nn.relu(C.dense(x, width, name))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")


class FC2(MLP):
    """Flatten, Dense(256) ReLU ("fc1"), head."""

    hidden: tuple[int, ...] = (256,)
