"""A counter-based hash RNG for weight initialization that compiles fast on XLA:CPU."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from leakjax.types import Array


def _lowbias32(h: Array) -> Array:
    """A 32-bit integer hash with low bias (C. Wellons' "lowbias32" constants)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def hash_bits(key: Array, shape: Sequence[int]) -> Array:
    """uint32 random bits of ``shape``: a counter hashed with the key's words.

    Initialization draws one tensor per parameter, and XLA:CPU compiles every
    ``jax.random.uniform`` (threefry) instance separately and slowly (about 0.5 s each, growing
    with their number: ResNet-18's init took ~14 s to compile). Hashing a counter with the
    per-parameter key that flax derives (itself threefry) compiles to one small elementwise
    fusion and gives well-mixed, reproducible bits, plenty for weight initialization.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = jnp.ravel(key).astype(jnp.uint32)
    s0, s1 = words[0], words[1 % words.shape[0]]
    for w in range(2, words.shape[0]):
        s1 = s1 ^ _lowbias32(words[w] + jnp.uint32(w))
    n = math.prod(shape)
    c = lax.iota(jnp.uint32, n) + s0 * jnp.uint32(0x9E3779B9)
    return _lowbias32(_lowbias32(c) ^ s1).reshape(tuple(shape))


def hash_uniform(key: Array, shape: Sequence[int], lo: float, hi: float) -> Array:
    """float32 ``U(lo, hi)`` of ``shape`` from :func:`hash_bits` (24-bit resolution)."""
    u = (hash_bits(key, shape) >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
    return lo + (hi - lo) * u


def hash_normal(key: Array, shape: Sequence[int], std: float) -> Array:
    """float32 ``N(0, std^2)`` of ``shape`` from :func:`hash_bits` (inverse CDF)."""
    # (k + 0.5) / 2^23 is exact in float32 and strictly inside (0, 1): no infinite tails.
    u = ((hash_bits(key, shape) >> 9).astype(jnp.float32) + 0.5) * (1.0 / (1 << 23))
    return std * math.sqrt(2.0) * lax.erf_inv(2.0 * u - 1.0)
