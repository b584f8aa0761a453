"""Command line: ``leakjax --config=configs/quickstart.py --workdir=runs/qs``.

Flags override config fields: ``--config.fl.num_clients=100``. A preset after a
colon is passed to ``get_config``: ``--config=configs/x.py:cpu``.
Bad input prints one line on stderr and exits with status 2, writing nothing.
"""

from __future__ import annotations

import os
import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (a get_config() .py file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "New or empty directory for all outputs.")
_DEBUG = flags.DEFINE_bool("debug", False, "Run without jit (jax.disable_jit) and with NaN checks.")
_CACHE = flags.DEFINE_string(
    "jax_cache_dir",
    os.environ.get("LEAKJAX_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "leakjax" / "jax")),
    "Persistent XLA compilation cache ('' disables).",
)


def _fail(msg: str, code: int = 2) -> None:
    print(f"leakjax: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        _fail("--config is required (e.g. --config=configs/quickstart.py)")
    if not _WORKDIR.value:
        _fail("--workdir is required (a new or empty directory)")
    import jax

    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from leakjax import experiment
    from leakjax.types import ConfigError, NumericalError

    try:
        if _DEBUG.value:
            jax.config.update("jax_debug_nans", True)
            with jax.disable_jit():
                summary = experiment.run(_CONFIG.value, _WORKDIR.value)
        else:
            summary = experiment.run(_CONFIG.value, _WORKDIR.value)
    except ConfigError as e:  # includes DataError
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except NumericalError as e:
        _fail(str(e), code=3)
    keys = (
        "attack",
        "mode",
        "images_attacked",
        "psnr_mean",
        "psnr_median",
        "ssim_mean",
        "success_rate",
        "label_accuracy",
        "final_test_acc",
        "wall_seconds",
    )
    print("summary: " + ", ".join(f"{k}={summary.get(k)}" for k in keys if k in summary))
    print(f"results in {_WORKDIR.value}")


def entry() -> None:
    app.run(main)


if __name__ == "__main__":
    entry()
