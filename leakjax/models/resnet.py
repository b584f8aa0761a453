"""ResNet-18 for small images (He et al., "Deep Residual Learning", arXiv 1512.03385).

The CIFAR variant the reference uses (its ``ResNet(BasicBlock, [2, 2, 2, 2])``): a 3x3 stem
without max pool, four stages of two BasicBlocks (64, 128, 256, 512 channels, stride 2 from the
second stage on, 1x1 projection shortcuts), BatchNorm after every convolution, global average
pooling and the linear ``head``; 11.17M parameters at 10 classes. Global pooling equals the
reference's ``AvgPool2d(4)`` at 32x32 and makes any input size and class count work (the
reference only builds it for 10 classes).

BatchNorm follows torch: momentum 0.1 (flax 0.9), epsilon 1e-5, scale 1 and bias 0 at init. In
training mode the statistics come from the rows where ``mask`` is true, so padded client batches
normalize like their real rows alone. One difference: the running variance is updated with the
biased batch variance (torch uses the unbiased one, a factor n / (n - 1) with n = B * H * W).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from leakjax.models import conv as C
from leakjax.types import Array


def batch_norm(x: Array, train: bool, mask: Array | None, name: str) -> Array:
    """torch-like ``BatchNorm2d`` on NHWC ``x``; ``mask [B]`` selects the rows for statistics."""
    m = None
    if train and mask is not None:
        m = (jnp.asarray(mask) != 0).reshape((-1,) + (1,) * (x.ndim - 1))
    bn = nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        use_fast_variance=False,
        name=name,
    )
    return bn(x, mask=m)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (projection when the shape changes).

    Attributes:
        features: output channels.
        strides: stride of the first convolution and of the shortcut.
        impl: convolution implementation.
    """

    features: int
    strides: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool, mask: Array | None) -> Array:
        conv = lambda f, k, s, p, name: C.Conv(  # noqa: E731
            f, k, strides=s, padding=p, use_bias=False, impl=self.impl, name=name
        )
        y = conv(self.features, 3, self.strides, 1, "conv1")(x)
        y = nn.relu(batch_norm(y, train, mask, "bn1"))
        y = conv(self.features, 3, 1, 1, "conv2")(y)
        y = batch_norm(y, train, mask, "bn2")
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.strides, 0, "shortcut_conv")(x)
            x = batch_norm(x, train, mask, "shortcut_bn")
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """CIFAR ResNet-18.

    Attributes:
        num_classes: logits.
        impl: convolution implementation.
        stages: BasicBlocks per stage.
    """

    num_classes: int
    impl: str = "auto"
    stages: tuple[int, ...] = (2, 2, 2, 2)

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        C.check_tap(return_features, ("head",))
        x = C.Conv(64, 3, padding=1, use_bias=False, impl=self.impl, name="conv1")(x)
        x = nn.relu(batch_norm(x, train, mask, "bn1"))
        for i, blocks in enumerate(self.stages):
            for j in range(blocks):
                x = BasicBlock(
                    64 * 2**i,
                    strides=2 if (i > 0 and j == 0) else 1,
                    impl=self.impl,
                    name=f"layer{i + 1}_{j}",
                )(x, train, mask)
        x = jnp.mean(x, axis=(1, 2))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")
