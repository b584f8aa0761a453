"""torch's default weight initializers (``nn.Conv2d`` / ``nn.Linear``, ``nn.init``) for flax,
drawn from the hash RNG (:mod:`leakjax.models.hash_rng`)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from leakjax.models.hash_rng import hash_normal, hash_uniform


def torch_uniform_init(fan_in: int) -> nn.initializers.Initializer:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, torch's default for Conv/Linear weights
    (``kaiming_uniform_(a=sqrt(5))``) and biases."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key, shape, dtype=jnp.float32):
        return hash_uniform(key, shape, -bound, bound).astype(dtype)

    return init


def normal_init(std: float) -> nn.initializers.Initializer:
    """``N(0, std^2)`` (torch's ``nn.init.normal_``)."""

    def init(key, shape, dtype=jnp.float32):
        return hash_normal(key, shape, std).astype(dtype)

    return init


def kaiming_normal_fan_out_init() -> nn.initializers.Initializer:
    """torch's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` for HWIO kernels:
    ``N(0, 2 / (kh * kw * cout))``."""

    def init(key, shape, dtype=jnp.float32):
        fan_out = math.prod(shape[:-2]) * shape[-1]
        return hash_normal(key, shape, math.sqrt(2.0 / fan_out)).astype(dtype)

    return init
