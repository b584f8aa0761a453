"""The sigmoid LeNet-5 of gradient-inversion papers.

The network of DLG (Zhu et al., arXiv 1906.08935) and GRNN (Ren et al., arXiv 2105.04710), as
the reference's ``GrnnLeNet``: Conv5x5(6) sigmoid, max pool 2, Conv5x5(16) sigmoid, max pool 2,
FC 120 sigmoid, FC 84 sigmoid, head. Convolutions have no padding (32x32 -> 5x5x16 = 400
features, 28x28 -> 4x4x16 = 256); sigmoids keep every gradient non-zero, which makes the model
easy to invert.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from leakjax.models import conv as C
from leakjax.models import pooling
from leakjax.types import Array


class LeNet(nn.Module):
    """Sigmoid LeNet-5 (no padding, max pooling).

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
        C.check_tap(return_features, ("head", "fc1", "fc2"))
        x = nn.sigmoid(C.Conv(6, 5, impl=self.impl, name="conv1")(x))
        x = pooling.max_pool(x, 2, impl=self.impl)
        x = nn.sigmoid(C.Conv(16, 5, impl=self.impl, name="conv2")(x))
        x = pooling.max_pool(x, 2, impl=self.impl)
        x = x.reshape(x.shape[0], -1)
        for width, name in ((120, "fc1"), (84, "fc2")):
            if return_features == name:
                return x
            x = nn.sigmoid(C.dense(x, width, name))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")


def _uniform_half(key, shape, dtype=jnp.float32):
    """U(-0.5, 0.5), the DLG authors' initialization of every weight and bias."""
    return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


class LeNetDLG(nn.Module):
    """The sigmoid LeNet of the DLG paper (Zhu et al. 2019, arXiv 1906.08935, their code).

    Three Conv5x5(12) with padding 2 and strides 2, 2, 1, each followed by a sigmoid, then the
    head on the flattened features (32x32 -> 8x8x12 = 768); no pooling. Every weight and bias is
    initialized U(-0.5, 0.5) as the DLG authors do: large weights keep the sigmoid features
    input-dependent, so one gradient pins the image down. (With torch's default init, as the
    reference's max-pooled ``lenet``, the features are nearly constant and gradient matching
    plateaus around 12-13 dB; BUILD_NOTES.md.)

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
        for i, stride in enumerate((2, 2, 1)):
            conv = C.Conv(
                12,
                5,
                strides=stride,
                padding=2,
                impl=self.impl,
                kernel_init=_uniform_half,
                bias_init=_uniform_half,
                name=f"conv{i + 1}",
            )
            x = nn.sigmoid(conv(x))
        x = x.reshape(x.shape[0], -1)
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head", _uniform_half, _uniform_half)
