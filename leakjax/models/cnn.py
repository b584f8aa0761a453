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


# (name, output channels, kernel, stride, padding) of RGAPCNN's convolutions, input first.
RGAP_CONVS = (
    ("conv1", 12, 4, 2, 1),
    ("conv2", 36, 3, 2, 1),
    ("conv3", 36, 3, 1, 1),
)
RGAP_SLOPE = 0.2


class RGAPCNN(nn.Module):
    """The small CNN R-GAP inverts in closed form ("rgap_cnn"): strided convolutions with
    LeakyReLU(0.2), then the head.

    Zhu and Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021 (arXiv
    2010.07733) attack networks whose every layer can be solved backwards: an invertible
    activation (LeakyReLU, not ReLU, so the pre-activation is known from the activation) and at
    least as many equations (the layer's outputs plus its weight gradient) as unknowns (its
    inputs). None of the benchmark's models qualify (ReLU and max pooling discard their
    inputs), so this is a small one in the paper's spirit (its CNN6, shortened): Conv4x4/2(12),
    Conv3x3/2(36), Conv3x3/1(36), each with bias and LeakyReLU(0.2), flatten, Dense head.
    At 32x32x3 the layers have 3072 -> 3072 -> 2304 -> 2304 units, 39,262 parameters with the
    head; any H, W >= 4 works (the quickstart's 16x16x1 digits too).
    The layer table `RGAP_CONVS` and `RGAP_SLOPE` are what `leakjax.attacks.rgap` reads.

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
        C.check_tap(return_features, ("head",))
        for name, features, kernel, stride, pad in RGAP_CONVS:
            conv = C.Conv(features, kernel, stride, pad, impl=self.impl, name=name)
            x = nn.leaky_relu(conv(x), RGAP_SLOPE)
        x = x.reshape(x.shape[0], -1)
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")
