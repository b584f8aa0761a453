"""Type aliases and the library's error types, shared by every module."""

from __future__ import annotations

from typing import Any

import jax

PyTree = Any
Params = Any  # a flax params pytree
Variables = Any  # {"params": ..., optionally "batch_stats": ...}
PRNGKey = jax.Array
Array = jax.Array


class ConfigError(ValueError):
    """Bad user input: the message is one line that names the offending setting.

    The CLI prints it on stderr and exits with status 2 before any work starts.
    """


class DataError(ConfigError):
    """A data set could not be found or read (names the data set / path / missing extra)."""


class NumericalError(FloatingPointError):
    """NaN or Inf detected in an attack or a training run (names where and when)."""
