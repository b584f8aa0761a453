"""The persistent XLA compilation cache of `leakjax` and `leakjax-sweep` (``--jax_cache_dir``).

A program compiled once (same shapes, same static settings: traced hyperparameters are
arguments, not constants) is read back from disk by a later process, or by a later experiment
of the same sweep, instead of being compiled again."""

from __future__ import annotations

import os
import pathlib

import jax
from absl import flags

DEFAULT_DIR = pathlib.Path.home() / ".cache" / "leakjax" / "jax"
FLAG = "jax_cache_dir"
# programs compiled faster than this are not worth a file (unless JAX's own
# JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise)
MIN_COMPILE_TIME_S = 1.0


def define_flag() -> None:
    """``--jax_cache_dir`` (default ``$LEAKJAX_JAX_CACHE`` or ``~/.cache/leakjax/jax``;
    ``''`` off), defined once per program; each command adopts it with
    ``flags.declare_key_flag`` so that its --help lists it."""
    if FLAG in flags.FLAGS:
        return
    flags.DEFINE_string(
        FLAG, os.environ.get("LEAKJAX_JAX_CACHE", str(DEFAULT_DIR)), "XLA cache ('' off)."
    )


def enable_from_flag() -> None:
    """Point JAX's persistent compilation cache at ``--jax_cache_dir`` (nothing for '')."""
    path = flags.FLAGS[FLAG].value
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # JAX's own setting
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
