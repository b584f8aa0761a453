"""VGG-16 (Simonyan & Zisserman, arXiv 1409.1556) with the reference's two classifier heads.

Features: 3x3 convolutions (padding 1) 64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M
(M = 2x2 max pool), ReLU, optionally BatchNorm after each convolution. Heads:

- ``"small"`` (the reference's ``TinyImageNetVGG``, its vgg16 for every data set but ImageNet):
  adaptive average pool to 2x2, FC 2048 -> 1024 -> 1024 -> classes, ReLU.
- ``"cpa"`` (its ``CpaVGG16``, torchvision's VGG-16, attacked by Cocktail Party Attack,
  Kariyappa et al., arXiv 2209.05578): adaptive average pool to 7x7, FC 25088 -> 4096 -> 4096
  -> classes, ReLU; CPA inverts the gradient of ``"fc1"``.

Dropout is 0, as in the reference. Initialization is torchvision's VGG init, which the
reference keeps: convolutions kaiming-normal (fan_out, ReLU gain), linear N(0, 0.01), zero biases.
Inputs need H, W >= 32 (five pools); at 32x32 the 1x1 feature map is replicated by the pool.
"""

from __future__ import annotations

import flax.linen as nn

from leakjax.models import conv as C
from leakjax.models import initializers, pooling
from leakjax.models.resnet import batch_norm
from leakjax.types import Array

CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
HEADS = {"small": (2, 1024), "cpa": (7, 4096)}  # pooled size, hidden width

_conv_init = initializers.kaiming_normal_fan_out_init()
_dense_init = initializers.normal_init(0.01)
_zeros = nn.initializers.zeros_init()


class VGG16(nn.Module):
    """VGG-16 with a "small" or "cpa" classifier.

    Attributes:
        num_classes: logits.
        head: "small" or "cpa".
        batch_norm: BatchNorm after every convolution.
        impl: convolution implementation.
    """

    num_classes: int
    head: str = "small"
    batch_norm: bool = False
    impl: str = "auto"

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        C.check_tap(return_features, ("head", "fc1", "fc2"))
        n = 0
        for v in CFG:
            if v == "M":
                x = pooling.max_pool(x, 2, impl=self.impl)
                continue
            n += 1
            x = C.Conv(
                v,
                3,
                padding=1,
                impl=self.impl,
                kernel_init=_conv_init,
                bias_init=_zeros,
                name=f"conv{n}",
            )(x)
            if self.batch_norm:
                x = batch_norm(x, train, mask, f"bn{n}")
            x = nn.relu(x)
        pooled, hidden = HEADS[self.head]
        x = pooling.adaptive_avg_pool(x, pooled)
        x = x.reshape(x.shape[0], -1)
        for name in ("fc1", "fc2"):
            if return_features == name:
                return x
            x = nn.relu(C.dense(x, hidden, name, kernel_init=_dense_init, bias_init=_zeros))
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head", kernel_init=_dense_init, bias_init=_zeros)
