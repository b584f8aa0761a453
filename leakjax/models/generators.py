"""Image generators used by generative attacks (flax.linen modules).

- `GRNNGenerator`: the generator of GRNN (Ren, Deng, Xie 2022, "GRNN: Generative Regression
  Neural Network -- A Data Leakage Attack for Federated Learning", ACM TIST,
  https://arxiv.org/abs/2105.00529), as used by the benchmark of Zhu, Huang, Xie,
  "Privacy Attack in Federated Learning is Not Easy" (https://arxiv.org/abs/2409.19301):
  a 4x4 transposed convolution of the noise followed by a gated linear unit (GLU), then
  ``[nearest upsample x2, conv 3x3, BatchNorm, GLU]`` blocks that halve the channels and
  double the resolution, a sigmoid output in [0, 1], and a label head
  ``softmax(Dense(z))``.

Generators output images in [0, 1] image space, NHWC; the attack that owns a generator maps
them into the data's normalized box (e.g. ``lo + (hi - lo) * g(z)``). Every module takes a
``train`` flag for its BatchNorm layers (attacks run them with batch statistics, as a
PyTorch generator in ``train()`` mode does) and is initialized like its PyTorch counterpart
(uniform +-1/sqrt(fan_in), torch's default for Linear/Conv/ConvTranspose layers;
convolutions through `leakjax.models.conv`, whose ``impl`` makes them fast on CPU) so that
optimizing it from scratch behaves like the reference.

`GENERATORS` maps names to classes (GRNN's, DMGAN's, GGL's); `save_generator` /
`load_generator` (`leakjax.models.generator_checkpoint`) write and read trained generators.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from leakjax.models import conv as C
from leakjax.models.initializers import torch_uniform_init
from leakjax.types import Array

NOISE_DIM = 128


def glu(x: Array, axis: int = -1) -> Array:
    """Gated linear unit (Dauphin et al. 2017): first half * sigmoid(second half)."""
    a, b = jnp.split(x, 2, axis=axis)
    return a * jax.nn.sigmoid(b)


def upsample_nearest(x: Array, factor: int = 2) -> Array:
    """Nearest-neighbour upsampling of NHWC images by an integer factor."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class UpGLU(nn.Module):
    """``nearest upsample x2 -> conv 3x3 (2*features, no bias) -> BatchNorm -> GLU``.

    Attributes:
      features: output channels (the convolution has twice as many, halved by the GLU).
      impl: convolution implementation (`leakjax.models.conv.IMPLS`).
    """

    features: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        x = upsample_nearest(x, 2)
        x = C.Conv(2 * self.features, 3, padding=1, use_bias=False, impl=self.impl, name="conv")(x)
        # torch BatchNorm2d defaults: momentum 0.1 (flax: 0.9), eps 1e-5
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
        return glu(x)


class GRNNGenerator(nn.Module):
    """GRNN's generator: noise [B, 128] -> (images [B, H, W, C] in [0, 1], label probs [B, K]).

    The image branch works at the smallest power of two ``P >= max(H, W, 8)``:
    ``ConvTranspose 4x4`` of the noise (as a 1x1 map) to ``2 * P * 2**n`` channels + GLU
    (4x4 maps, ``n = log2(P) - 3``), ``n`` upsampling blocks that halve the channels, and a
    last block to ``C`` channels at ``P x P``; a sigmoid maps to [0, 1]. For the reference's
    32x32x3 this is ConvT 128->256 + GLU (128@4x4), 128->64 (8x8), 64->32 (16x16),
    32->3 (32x32). Sizes that are not a power of two (e.g. 28x28) are centre-cropped from
    ``P x P`` (the reference supports powers of two only).

    Attributes:
      num_classes: size of the label head.
      image_shape: (H, W, C) of the attacked model's input.
      impl: convolution implementation (`leakjax.models.conv.IMPLS`).
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    impl: str = "auto"

    @nn.compact
    def __call__(self, z: Array, train: bool = True) -> tuple[Array, Array]:
        h, w, c = self.image_shape
        p = max(8, 1 << (max(h, w) - 1).bit_length())
        blocks = int(math.log2(p)) - 3
        nz = z.shape[-1]
        y = jax.nn.softmax(
            nn.Dense(
                self.num_classes,
                kernel_init=torch_uniform_init(nz),
                bias_init=torch_uniform_init(nz),
                name="label_head",
            )(z),
            axis=-1,
        )
        width = p * 2**blocks
        # torch computes a ConvTranspose's fan_in from its weight's dim 1 (= out channels * k*k)
        fan = 2 * width * 16
        x = z.reshape(z.shape[0], 1, 1, nz)
        x = nn.ConvTranspose(
            2 * width,
            (4, 4),
            padding="VALID",
            kernel_init=torch_uniform_init(fan),
            bias_init=torch_uniform_init(fan),
            name="in_block",
        )(x)
        x = glu(x)
        for i, b in enumerate(reversed(range(blocks))):
            x = UpGLU(p * 2**b, self.impl, name=f"block{i}")(x, train)
        x = UpGLU(c, self.impl, name="out_block")(x, train)
        x = jax.nn.sigmoid(x)
        if (h, w) != (p, p):
            top, left = (p - h) // 2, (p - w) // 2
            x = x[:, top : top + h, left : left + w, :]
        return x, y


def generate(generator: nn.Module, variables, z: Array, *, train: bool = True):
    """Run a generator; returns ``(outputs, variables')`` (new BatchNorm statistics when
    ``train``)."""
    if train and "batch_stats" in variables:
        out, upd = generator.apply(variables, z, train=True, mutable=["batch_stats"])
        return out, {**variables, **upd}
    return generator.apply(variables, z, train=False), variables


def init_generator(generator: nn.Module, key, batch: int = 2, noise_dim: int = NOISE_DIM):
    """Variables of a generator ({'params', 'batch_stats'})."""
    return generator.init(key, jnp.zeros((batch, noise_dim), jnp.float32), train=False)


GENERATORS = {"grnn": GRNNGenerator}

__all__ = [
    "GENERATORS",
    "GRNNGenerator",
    "NOISE_DIM",
    "UpGLU",
    "generate",
    "glu",
    "init_generator",
    "upsample_nearest",
]


# --------------------------------------------------------------------------- DMGAN
# Hitaj, Ateniese, Perez-Cruz, "Deep Models Under the GAN: Information Leakage from
# Collaborative Deep Learning", CCS 2017, https://arxiv.org/abs/1702.07464; architectures
# of the benchmark's reference (fleak/model/gan.py: MnistGenerator, DMGan*Discriminator).


def _leaky_relu(x: Array, slope: float) -> Array:
    return jnp.where(x >= 0, x, slope * x)


class DMGANGenerator(nn.Module):
    """DMGAN's DCGAN-style generator: noise [B, nz] -> images [B, H, W, C] in [0, 1].

    ``Dense(nz -> H/4 * W/4 * 4w)``, BatchNorm, LeakyReLU -> reshape -> ConvT 5x5 stride 1
    to ``2w`` (as a same-padded 5x5 convolution), BatchNorm, LeakyReLU -> ConvT 4x4 stride 2
    to ``w`` (H/2), BatchNorm, LeakyReLU -> ConvT 4x4 stride 2 to ``C`` (H), tanh, mapped to
    [0, 1] as ``(tanh + 1) / 2``. With ``width=64`` and 28x28x1 this is the reference's
    ``MnistGenerator`` (100 -> 256@7x7 -> 128@7x7 -> 64@14x14 -> 1@28x28); H and W must be
    multiples of 4.

    Attributes:
      image_shape: (H, W, C) of the images to generate.
      width: channels of the last hidden layer (the reference: 64).
      negative_slope: LeakyReLU slope (torch's default 0.01).
      impl: convolution implementation (`leakjax.models.conv.IMPLS`).
    """

    image_shape: tuple[int, int, int]
    width: int = 64
    negative_slope: float = 0.01
    impl: str = "auto"

    @nn.compact
    def __call__(self, z: Array, train: bool = True) -> Array:
        h, w, c = self.image_shape
        w4 = 4 * self.width
        bn = lambda name: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
        )
        act = lambda x: _leaky_relu(x, self.negative_slope)
        x = C.dense(z, (h // 4) * (w // 4) * w4, "fc")
        x = act(bn("bn0")(x))
        x = x.reshape(z.shape[0], h // 4, w // 4, w4)
        # torch's ConvTranspose2d(k=5, s=1, p=2) is a same-padded 5x5 convolution (with a
        # flipped kernel); its fan_in is out_channels * k * k.
        x = C.Conv(
            2 * self.width,
            5,
            padding=2,
            use_bias=False,
            impl=self.impl,
            kernel_init=torch_uniform_init(2 * self.width * 25),
            name="conv1",
        )(x)
        x = act(bn("bn1")(x))
        for i, feats in enumerate((self.width, c)):
            # torch ConvTranspose2d(k=4, s=2, p=1): pad k - 1 - p = 2 on both sides.
            x = ConvTranspose4x4s2(
                feats, impl=self.impl, kernel_init=torch_uniform_init(feats * 16),
                name=f"convt{i + 2}",
            )(x)  # fmt: skip
            if i == 0:
                x = act(bn("bn2")(x))
        return (jnp.tanh(x) + 1.0) / 2.0


class DMGANDiscriminator(nn.Module):
    """The reference's DMGAN discriminator, used as the federation's global model.

    ``Conv 4x4 stride 2 pad 1 (w, no bias)``, LeakyReLU -> ``Conv 4x4 stride 2 pad 1 (2w, no
    bias)``, LeakyReLU -> flatten -> ``Dense`` head to ``num_classes`` logits (DMGAN passes the
    data set's classes + 1, the extra "fake" class). ``width=64`` is the reference's
    ``DMGanMnistDiscriminator`` (slope 0.01) / ``DMGanCifarDiscriminator`` (slope 0.2). The
    reference's ``Dropout2d(0.3)`` (MNIST) is left out: leakjax models are deterministic.
    Called like the registry's models: ``(x, train, mask, return_features)``.

    Attributes:
      num_classes: logits (classes + 1 for DMGAN).
      width: channels of the first convolution.
      negative_slope: LeakyReLU slope.
      impl: convolution implementation.
    """

    num_classes: int
    width: int = 64
    negative_slope: float = 0.01
    impl: str = "auto"

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        C.check_tap(return_features, ("head",))
        for i, feats in enumerate((self.width, 2 * self.width)):
            conv = C.Conv(feats, 4, 2, 1, use_bias=False, impl=self.impl, name=f"conv{i + 1}")
            x = _leaky_relu(conv(x), self.negative_slope)
        x = x.reshape(x.shape[0], -1)
        if return_features == "head":
            return x
        return C.dense(x, self.num_classes, "head")


GENERATORS["dmgan"] = DMGANGenerator
__all__ += ["DMGANDiscriminator", "DMGANGenerator"]


# --------------------------------------------------------------------------- GGL
# Li, Zhou, Liang, Lu, Chen, Chen, "Auditing Privacy Defenses in Federated Learning via
# Generative Gradient Leakage", CVPR 2022, https://arxiv.org/abs/2203.15696: a GAN generator
# trained on public data (WGAN-GP), whose latent space the attack searches. Architecture of
# the benchmark's reference (fleak/model/gan.py: GGLGenerator / GGLDiscriminator, after the
# GGL authors' wgan-gp_celeba notebook).


# Sub-pixel taps of a 4x4 stride-2 transposed convolution (flax's ``nn.ConvTranspose`` layout,
# padding 2 = torch's ``ConvTranspose2d(k=4, s=2, p=1)``): output row 2m + a reads input rows
# m - 1, m, m + 1 (3 taps t = 0, 1, 2) through kernel row _SUBPIXEL[a][t] (-1: no tap).
_SUBPIXEL = ((0, 2, -1), (-1, 1, 3))


class ConvTranspose4x4s2(nn.Module):
    """A 4x4, stride-2 transposed convolution that doubles H and W, without bias.

    The same function and parameter (``kernel [4, 4, cin, features]``) as
    ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
    use_bias=False)``, i.e. torch's ``ConvTranspose2d(k=4, s=2, p=1)``, computed as one
    3x3 convolution to ``4 * features`` channels (the four output phases, with zero taps)
    followed by a depth-to-space reshape. XLA's CPU backend runs the input-dilated
    convolution of ``nn.ConvTranspose`` and its kernel gradient through a slow generic path;
    this form uses `leakjax.models.conv.conv2d` (``impl``) and is several times faster there.

    Attributes:
      features: output channels.
      impl: convolution implementation (`leakjax.models.conv.IMPLS`).
      kernel_init: initializer of the ``[4, 4, cin, features]`` kernel.
    """

    features: int
    impl: str = "auto"
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, h, w, cin = x.shape
        kernel = self.param("kernel", self.kernel_init, (4, 4, cin, self.features), jnp.float32)
        padded = jnp.concatenate([kernel, jnp.zeros((1, 4, cin, self.features), kernel.dtype)])
        rows = jnp.asarray(_SUBPIXEL)  # [phase, tap] -> kernel row (-1: the zero row)
        k = padded[rows]  # [ay, ty, 4, cin, f]
        k = jnp.concatenate([k, jnp.zeros_like(k[:, :, :1])], axis=2)[:, :, rows]
        # k: [ay, ty, ax, tx, cin, f] -> [ty, tx, cin, (ay, ax, f)]
        k = k.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, cin, 4 * self.features)
        y = C.conv2d(x, k, 1, 1, impl=self.impl)  # [b, h, w, (ay, ax, f)]
        y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, 2 * h, 2 * w, self.features)


class ConvTranspose2x2(nn.Module):
    """torch's ``ConvTranspose2d(cin, features, kernel_size=2, stride=2)``.

    With kernel = stride = 2 every input pixel paints its own 2x2 output block, so the layer
    is one matmul ``[..., cin] @ [cin, 2 * 2 * features]`` followed by a depth-to-space
    reshape: exact, and fast on CPU. Parameters ``kernel [2, 2, cin, features]`` (output
    offset y, x first) and ``bias [features]``, initialized as torch does
    (U(+-1/sqrt(fan_in)) with torch's transposed-convolution fan_in ``features * 2 * 2``).

    Attributes:
      features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, h, w, cin = x.shape
        init = torch_uniform_init(self.features * 4)
        kernel = self.param("kernel", init, (2, 2, cin, self.features), jnp.float32)
        bias = self.param("bias", init, (self.features,), jnp.float32)
        y = jnp.einsum("bhwi,yxio->bhywxo", x, kernel)
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


def _pow2_side(image_shape) -> int:
    """Smallest power of two >= max(H, W, 8): the square side a generator works at."""
    h, w = image_shape[:2]
    return max(8, 1 << (max(h, w) - 1).bit_length())


def _center_crop(x: Array, h: int, w: int) -> Array:
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[:, top : top + h, left : left + w, :]


class GGLGenerator(nn.Module):
    """GGL's generator: latent z [B, d] -> images [B, H, W, C] in [0, 1].

    ``Dense(d -> 4 * 4 * w0)``, BatchNorm, ReLU -> reshape to ``w0@4x4`` -> [ConvT 2x2
    stride 2 halving the channels, BatchNorm, ReLU] x (n - 1) -> ConvT 2x2 stride 2 to ``C``
    -> tanh, mapped to [0, 1] as ``(tanh + 1) / 2``, where the working side ``P`` is the
    smallest power of two >= max(H, W, 8), ``n = log2(P) - 2`` and ``w0 = dim * 2**(n-1)``.
    For 32x32x3 and ``dim=128`` this is the reference's ``GGLGenerator`` (128 -> 8192, BN,
    ReLU -> 512@4x4 -> 256@8x8 -> 128@16x16 -> 3@32x32, tanh); other sizes are
    centre-cropped from ``P x P`` (e.g. 28x28 MNIST from 32x32).

    The attack runs it in eval mode (running BatchNorm statistics), as the reference does.

    Attributes:
      image_shape: (H, W, C) of the images to generate.
      dim: channels of the last hidden layer (the reference: 128).
    """

    image_shape: tuple[int, int, int]
    dim: int = 128

    @nn.compact
    def __call__(self, z: Array, train: bool = True) -> Array:
        h, w, c = self.image_shape
        n = int(math.log2(_pow2_side(self.image_shape))) - 2
        width = self.dim * 2 ** (n - 1)
        bn = lambda name: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
        )
        x = C.dense(z, 16 * width, "linear")
        x = jax.nn.relu(bn("linear_bn")(x))
        x = x.reshape(z.shape[0], 4, 4, width)
        for i in range(n - 1):
            width //= 2
            x = ConvTranspose2x2(width, name=f"up{i}")(x)
            x = jax.nn.relu(bn(f"up{i}_bn")(x))
        x = ConvTranspose2x2(c, name="out")(x)
        x = (jnp.tanh(x) + 1.0) / 2.0
        if x.shape[1:3] != (h, w):
            x = _center_crop(x, h, w)
        return x


class GGLDiscriminator(nn.Module):
    """GGL's WGAN-GP critic: images [B, H, W, C] (in [-1, 1]) -> scores [B].

    ``[Conv 3x3 stride 2 pad 1, LeakyReLU(0.01)]`` to ``dim``, ``2 dim``, ``4 dim`` channels
    -> flatten -> ``Dense(1)`` (the reference's ``GGLDiscriminator``; no normalization
    layers, so the gradient penalty is per sample).

    Attributes:
      dim: channels of the first convolution (the reference: 128).
      impl: convolution implementation (`leakjax.models.conv.IMPLS`; all are twice
        differentiable in reverse mode, which the gradient penalty needs).
    """

    dim: int = 128
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for i, feats in enumerate((self.dim, 2 * self.dim, 4 * self.dim)):
            x = C.Conv(feats, 3, 2, 1, impl=self.impl, name=f"conv{i}")(x)
            x = jax.nn.leaky_relu(x, 0.01)
        x = x.reshape(x.shape[0], -1)
        return C.dense(x, 1, "linear")[:, 0]


GENERATORS["ggl"] = GGLGenerator

__all__ += [
    "ConvTranspose2x2",
    "ConvTranspose4x4s2",
    "GGLDiscriminator",
    "GGLGenerator",
]
