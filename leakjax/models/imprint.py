"""The imprint block of "Robbing the Fed" (RTF) prepended to a registered model.

Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining Private Data in
Federated Learning with Modified Models", ICLR 2022, https://arxiv.org/abs/2110.13057; used by
Zhu, Huang, Xie, arXiv 2409.19301 (Sec. IV-E, IV-I, IV-K) in front of ResNet-18 and the cnn.

A malicious server puts a two-layer block in front of the model it sends out:

- ``linear0`` (``params['imprint']['linear0']``, Dense ``N -> bins`` with ``N = H * W * C``):
  every row is the same linear measurement ``h(x) = scale * mean(x)`` of the flattened
  (normalized, NHWC) image, multiplied by ``gain``; bin ``i``'s bias is ``-gain * c_i``, where
  ``c_i`` is the ``i / bins`` quantile of the distribution the server assumes for ``h`` over
  images ("laplace": Laplace(0, 1/sqrt 2); "gaussian": N(0, 1); "uniform": U(-sqrt 3, sqrt 3):
  all of unit variance) and ``c_0 = -10`` instead of minus infinity. After the ReLU, bin ``i``
  is active exactly for the images with ``h(x) > c_i``.
- ``linear1`` (``params['imprint']['linear1']``, Dense ``bins -> N``): every weight
  ``1 / gain``, bias torch's default uniform init minus ``mean(c)``, so the block's output
  pixel is ``sum_i relu(h(x) - c_i) + bias``: a (nearly) constant image that only encodes the
  brightness ``h(x)``. The output is reshaped to ``(H, W, C)`` and fed to the base model.

Because every bin's weights are identical, ``dL/d(bin i)`` of an image is the same for all bins
it activates, so the gradients of two consecutive bins differ by exactly the images whose
brightness lies in ``(c_i, c_{i+1}]``; ``leakjax.attacks.rtf`` divides the weight difference by
the bias difference to read such an image out. The defaults (100 bins, Laplace, gain 1e-3,
``scale = 1.32``, the reference's "fourier" mode-0 query ``4 * 0.33 / N``) are the reference's
``ImprintBlock`` (REFERENCE.md section 3).

The base model sees only the brightness, which is why the paper finds that FL with the block
does not converge (Fig. 48), and the ``1 / gain = 1000`` weights of ``linear1`` make the
activations of a base model without normalization layers (the plain cnn) very large, so its
local training can blow up (Fig. 46; see tests/test_rtf.py for what happens here).

The wrapped model keeps the base model's parameter names at the top level (``params['head']``,
``params['fc1']``, ...), so label inference and every other consumer see the same tree plus
``params['imprint']``.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from leakjax.types import Array, ConfigError

DISTRIBUTIONS = ("laplace", "gaussian", "uniform")
#: The reference's measurement weight times N (its "fourier" query at mode 0: 4 * 0.33).
REFERENCE_SCALE = 1.32
#: The lowest threshold, standing in for minus infinity (as the reference does).
FLOOR = -10.0


def thresholds(bins: int, distribution: str = "laplace") -> np.ndarray:
    """The bin thresholds ``c_0 < c_1 < ... < c_{bins-1}`` (float64).

    ``c_i`` is the ``i / bins`` quantile of the unit-variance ``distribution`` and ``c_0`` is
    :data:`FLOOR`, so that each bin holds ``1 / bins`` of the assumed mass of ``h(x)``.

    Args:
        bins: number of bins (>= 2).
        distribution: one of :data:`DISTRIBUTIONS`.

    Raises:
        ConfigError: unknown distribution or fewer than 2 bins.
    """
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"model.imprint_distribution={distribution!r} is not one of {DISTRIBUTIONS}"
        )
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"model.imprint_bins={bins!r} must be an int >= 2")
    p = np.arange(1, bins) / bins
    if distribution == "laplace":
        q = stats.laplace(loc=0.0, scale=1.0 / math.sqrt(2.0)).ppf(p)
    elif distribution == "gaussian":
        q = stats.norm().ppf(p)
    else:
        q = stats.uniform(loc=-math.sqrt(3.0), scale=2.0 * math.sqrt(3.0)).ppf(p)
    return np.concatenate([[FLOOR], q]).astype(np.float64)


def _const(value: np.ndarray):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.broadcast_to(jnp.asarray(value, dtype), shape)

    return init


class ImprintBlock(nn.Module):
    """Flattened images ``[B, N]`` -> linear0 -> ReLU -> linear1 -> ``[B, N]``.

    Attributes:
        bins: number of bins (linear0's outputs).
        distribution: the assumed distribution of the measurement (:data:`DISTRIBUTIONS`).
        gain: linear0's scale (and 1 / linear1's weights).
        scale: the measurement is ``scale * mean(x)``.
    """

    bins: int = 100
    distribution: str = "laplace"
    gain: float = 1e-3
    scale: float = REFERENCE_SCALE

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n = x.shape[-1]
        c = thresholds(self.bins, self.distribution)
        w0 = np.full((n, self.bins), self.scale / n * self.gain)
        h = nn.Dense(
            self.bins,
            kernel_init=_const(w0),
            bias_init=_const(-c * self.gain),
            name="linear0",
        )(x)
        h = nn.relu(h)
        bound = 1.0 / math.sqrt(self.bins)

        def bias1(key, shape, dtype=jnp.float32):
            u = jax.random.uniform(key, shape, dtype, -bound, bound)
            return u - jnp.asarray(c.mean(), dtype)

        return nn.Dense(
            n,
            kernel_init=_const(np.full((self.bins, n), 1.0 / self.gain)),
            bias_init=bias1,
            name="linear1",
        )(h)


class Imprinted(nn.Module):
    """An :class:`ImprintBlock` (named ``"imprint"``) in front of ``base``.

    ``base``'s parameters stay at the top level of the tree (``nn.share_scope``).

    Attributes:
        base: the registered model's module.
        bins, distribution, gain, scale: see :class:`ImprintBlock`.
    """

    base: nn.Module
    bins: int = 100
    distribution: str = "laplace"
    gain: float = 1e-3
    scale: float = REFERENCE_SCALE

    def setup(self):
        nn.share_scope(self.base, self)
        self.imprint = ImprintBlock(self.bins, self.distribution, self.gain, self.scale)

    def __call__(
        self, x: Array, train: bool = False, mask=None, return_features: str | None = None
    ) -> Array:
        b = x.shape[0]
        z = self.imprint(x.reshape(b, -1)).reshape(x.shape)
        return self.base(z, train=train, mask=mask, return_features=return_features)


def wrap(
    model,
    bins: int = 100,
    distribution: str = "laplace",
    gain: float = 1e-3,
    scale: float = REFERENCE_SCALE,
):
    """``model`` with the RTF imprint block in front (a new :class:`~leakjax.models.Model`).

    Args:
        model: a :class:`leakjax.models.Model` (from ``models.get``).
        bins: number of bins (linear0's width; >= 2).
        distribution: "laplace" (the reference), "gaussian" or "uniform".
        gain: linear0's scale; linear1's weights are ``1 / gain``.
        scale: the measurement is ``scale * mean(x)`` of the normalized image (default: the
            reference's 1.32).

    Returns:
        A ``Model`` named ``"imprint+<name>"`` with the same input shape, classes, apply
        contract and BatchNorm flag; its parameters are the base model's plus
        ``params['imprint']['linear0' | 'linear1']``.

    Raises:
        ConfigError: bad bins, distribution, gain or scale.
    """
    thresholds(bins, distribution)  # validates both
    for key, value in (("gain", gain), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"model.imprint_{key}={value!r} must be a positive number")
    if "imprint" in model.name.split("+"):
        raise ConfigError(f"model {model.name!r} already has an imprint block")
    module = Imprinted(
        model.module,
        bins=int(bins),
        distribution=distribution,
        gain=float(gain),
        scale=float(scale),
    )
    return dataclasses.replace(model, name=f"imprint+{model.name}", module=module)


def imprint_params(params) -> dict:
    """``params['imprint']``, or a ConfigError naming the missing block."""
    if not hasattr(params, "keys") or "imprint" not in params:
        raise ConfigError(
            "model has no imprint block (params['imprint']); set model.imprint_bins > 0 "
            "(leakjax.models.imprint.wrap)"
        )
    return params["imprint"]
