"""Small convolutional networks of the reference's experiments.

- :class:`CNN` ("cnn"): the reference's ``CifarConvNetNoDropout`` / ``MnistConvNetNoDropout``,
  the default FedAvg model of Zhu, Huang, Xie, "Privacy Attack in Federated Learning is Not
  Easy" (arXiv 2409.19301); the CIFAR variant has 8.41M parameters at 32x32x3, 10 classes.
- :class:`CNN3` ("cnn3"): the ConvNet of "Data Leakage in Federated Averaging" (Dimitrov et al.,
  arXiv 2202.05165; the reference's ``DLFConvNet3``), 1.73M parameters at 32x32x3.

No dropout, as in the reference's attacked models. Flattening is NHWC (torch's is NCHW), which
only permutes the rows of ``fc1``'s kernel.
"""

from __future__ import annotations

import flax.linen as nn

from leakjax.models import conv as C
from leakjax.models import pooling
from leakjax.types import Array


class CNN(nn.Module):
    """Conv3x3(32) ReLU, Conv3x3(64) ReLU, max pool 2, FC ReLU, head.

    Attributes:
        num_classes: logits.
        variant: "cifar" (padding 1, FC 512) or "mnist" (no padding, FC 128).
        impl: convolution implementation (:data:`leakjax.models.conv.IMPLS`).
    """

    num_classes: int
    variant: str = "cifar"
    impl: str = "auto"

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        C.check_tap(return_features, ("head", "fc1"))
        pad, hidden = (1, 512) if self.variant == "cifar" else (0, 128)
        x = nn.relu(C.Conv(32, 3, padding=pad, impl=self.impl, name="conv1")(x))
        x = nn.relu(C.Conv(64, 3, padding=pad, impl=self.impl, name="conv2")(x))
        x = pooling.max_pool(x, 2, impl=self.impl)
        x = x.reshape(x.shape[0], -1)
        if return_features == "fc1":
            return x
        x = nn.relu(C.dense(x, hidden, "fc1"))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")


class CNN3(nn.Module):
    """Conv3x3(64) ReLU avgpool 2, Conv3x3(128) ReLU avgpool 2, FC 200 ReLU, head.

    Attributes:
        num_classes: logits.
        impl: convolution implementation.
    """

    num_classes: int
    impl: str = "auto"

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        C.check_tap(return_features, ("head", "fc1"))
        x = nn.relu(C.Conv(64, 3, padding=1, impl=self.impl, name="conv1")(x))
        x = pooling.avg_pool(x, 2, impl=self.impl)
        x = nn.relu(C.Conv(128, 3, padding=1, impl=self.impl, name="conv2")(x))
        x = pooling.avg_pool(x, 2, impl=self.impl)
        x = x.reshape(x.shape[0], -1)
        if return_features == "fc1":
            return x
        x = nn.relu(C.dense(x, 200, "fc1"))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")
