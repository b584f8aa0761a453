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
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue an interrupted run in --workdir (same config)."
)
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
    try:  # ml_collections defers config-file load errors to the first access
        _ = "data" in _CONFIG.value
    except Exception as e:  # noqa: BLE001
        _fail(_one_line(e))
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
                summary = experiment.run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
        else:
            summary = experiment.run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
    except ConfigError as e:  # includes DataError
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except NumericalError as e:
        _fail(str(e), code=3)
    except KeyboardInterrupt as e:  # includes attacks.base.Interrupted (SIGINT / SIGTERM)
        _fail(f"{e or 'interrupted'}; continue with the same flags plus --resume", code=130)
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


def _one_line(e: BaseException) -> str:
    """The informative line of an error (the last line of an embedded traceback)."""
    if isinstance(e, KeyError) and not isinstance(e.__cause__, Exception):
        return f"unknown config field {e.args[0]!r} (the schema is leakjax/config.py)"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if len(lines) == 1 and lines[0].strip("\"'").isidentifier():  # ml_collections' KeyError
        field = lines[0].strip("\"'")
        return f"unknown config field {field!r} (schema: leakjax/config.py)"
    if not lines:
        return type(e).__name__
    if any(ln.startswith("Traceback") for ln in lines):
        tail = lines[-1]
        head = lines[0].split(":")[0]  # "flag --config=..."
        return f"{head}: {tail}" if head.startswith("flag") else tail
    if len(lines) > 1 and any("No such file" in ln for ln in lines):
        return f"config file not found: {lines[-1]}"
    return " ".join(lines)


def _parse(argv):
    """absl's parser, but a bad flag / config file / override is one line and exit 2."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - flags.Error, config file errors, bad overrides
        _fail(_one_line(e))


def entry() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    entry()
