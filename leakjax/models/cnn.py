"""Small convolutional networks of the reference's experiments.

- ``CNN`` ("cnn"): the reference's ``CifarConvNetNoDropout`` / ``MnistConvNetNoDropout``, the
  default FedAvg model of Zhu, Huang, Xie, "Privacy Attack in Federated Learning is Not Easy"
  (arXiv 2409.19301). The CIFAR variant has 8.41M parameters at 32x32x3 and 10 classes.
- ``CNN3`` ("cnn3"): the three-layer ConvNet of Deep Leakage from Federated averaging
  (Dimitrov et al., arXiv 2202.05165; the reference's ``DLFConvNet3``), 1.73M parameters.

Dropout is left out, as in the reference's attacked models. Convolutions and pools take the
``impl`` of :mod:`leakjax.models.conv`.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from leakjax.models import conv as C
from leakjax.types import Array


class CNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max pool and two linear layers.

    Attributes:
        num_classes: logits.
        variant: "cifar" (3x3 convs with padding 1, 32 -> 64 channels, FC 512) or "mnist"
            (valid 3x3 convs, 32 -> 64 channels, FC 128).
        impl: convolution implementation (:data:`leakjax.models.conv.IMPLS`).
    """

    num_classes: int
    variant: str = "cifar"
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool = False, mask=None, return_features: bool = False):
        pad, hidden = (1, 512) if self.variant == "cifar" else ("VALID", 128)
        x = nn.relu(C.Conv(32, 3, padding=pad, impl=self.impl, name="conv1")(x))
        x = nn.relu(C.Conv(64, 3, padding=pad, impl=self.impl, name="conv2")(x))
        x = C.max_pool(x, 2, impl=self.impl)
        x = x.reshape(x.shape[0], -1)
        z = nn.relu(C.dense(x, hidden, name="fc1"))
        if return_features:
            return z
        return C.dense(z, self.num_classes, name="head")


class CNN3(nn.Module):
    """Conv3x3(64) + ReLU + avgpool 2, Conv3x3(128) + ReLU + avgpool 2, FC 200 + ReLU, head.

    Attributes:
        num_classes: logits.
        impl: convolution implementation.
    """

    num_classes: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool = False, mask=None, return_features: bool = False):
        x = nn.relu(C.Conv(64, 3, padding=1, impl=self.impl, name="conv1")(x))
        x = C.avg_pool(x, 2, impl=self.impl)
        x = nn.relu(C.Conv(128, 3, padding=1, impl=self.impl, name="conv2")(x))
        x = C.avg_pool(x, 2, impl=self.impl)
        x = jnp.reshape(x, (x.shape[0], -1))
        z = nn.relu(C.dense(x, 200, name="fc1"))
        if return_features:
            return z
        return C.dense(z, self.num_classes, name="head")
