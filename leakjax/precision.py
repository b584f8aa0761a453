"""Matmul/conv precision policy (``config.precision.attack`` / ``config.precision.fl``).

A policy is one of :data:`POLICIES`:

- ``'f32'`` (default): float32 operands and accumulation; runs under
  ``jax.default_matmul_precision('float32')``, so an accelerator does not silently use
  TF32 for float32 dots. On CPU this is bit for bit what leakjax computed before the policy.
- ``'tf32'``: runs under ``jax.default_matmul_precision('tensorfloat32')``.
- ``'bf16'``: runs under ``jax.default_matmul_precision('bfloat16')``: bfloat16 operands,
  float32 accumulation.

XLA:CPU ignores ``default_matmul_precision`` (measured, jax 0.10.2: the results are bit-identical
under every value), so the model's convolutions and dense layers (`leakjax.models.conv`, where
the FLOPs are) also round their two operands to the policy's format themselves
(:func:`operands`): a float32 product of two bfloat16 (or TF32) values is exact and
the sum stays in float32, so CPU numerics equal an accelerator's "low-precision operands,
float32 accumulation" for those layers. The rounding is straight-through for autodiff (the
backward products take the rounded operands and a float32 cotangent). Other dots (matching
losses, the factored client's small products) follow only the XLA setting: float32 on CPU.

bf16 is not a CPU speed path (BUILD_NOTES, "Precision policy"); it is for accelerators and for
measuring, on CPU, what an accelerator's precision does to an attack.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

POLICIES = ("f32", "tf32", "bf16")
_XLA = {"f32": "float32", "tf32": "tensorfloat32", "bf16": "bfloat16"}
_MANTISSA_BITS = {"tensorfloat32": 10, "bfloat16": 7}  # float32 has 23; all have 8 exponent bits


def scope(policy: str):
    """The context that runs traced computation under ``policy`` (read at trace time; the
    setting is part of jit's cache key, so a program traced under one policy is never
    reused under another)."""
    if policy not in POLICIES:
        raise ValueError(f"precision policy {policy!r} is not one of {POLICIES}")
    return jax.default_matmul_precision(_XLA[policy])


def policies(config) -> dict:
    """``{'fl': ..., 'attack': ...}``: a config's ``precision`` group ('f32' where absent)."""
    group = config.get("precision") or {}
    return {side: group.get(side, "f32") for side in ("fl", "attack")}


def scopes(config) -> tuple:
    """``(fl_scope, attack_scope)`` of a config's ``precision`` group."""
    chosen = policies(config)
    return scope(str(chosen["fl"])), scope(str(chosen["attack"]))


def active_mantissa_bits() -> int | None:
    """The mantissa bits of the active policy's operands, None for float32 (no rounding)."""
    return _MANTISSA_BITS.get(jax.config.jax_default_matmul_precision)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _round(x, bits: int):
    return lax.reduce_precision(x, exponent_bits=8, mantissa_bits=bits)


@_round.defjvp
def _round_jvp(bits, primals, tangents):  # straight-through: d round(x) = dx
    return _round(primals[0], bits), tangents[0]


def operands(*xs):
    """``xs`` rounded to the active policy's operand format (unchanged under 'f32')."""
    bits = active_mantissa_bits()
    if bits is None:
        return xs
    return tuple(_round(x, bits) if jnp.issubdtype(x.dtype, jnp.floating) else x for x in xs)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` of :func:`operands`-rounded operands (``nn.Dense(dot_general=)``)."""
    lhs, rhs = operands(lhs, rhs)
    return lax.dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
