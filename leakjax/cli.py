"""Command line: ``leakjax --config=configs/quickstart.py --workdir=runs/qs``.

Flags override config fields: ``--config.fl.num_clients=100``; every setting of the chosen
attack or of a chained defense is a field too (``--config.attack.reorder=2``), even when the
config file leaves it out (`leakjax.overrides`). A preset after a colon is passed to
``get_config``: ``--config=configs/x.py:cpu``. A path that does not exist here names the
packaged configs: ``--config=quickstart.py`` works from a pip install.

Exit codes: 0 done; 2 bad input (one line on stderr, nothing written); 3 numerical failure
(every reconstruction NaN/Inf); 130 interrupted (continue with the same flags plus --resume).
"""

from __future__ import annotations

import logging
import os
import sys
import typing

import jax
from absl import app, flags

from leakjax import (
    attacks,
    compile_cache,
    config_files,
    defenses,
    distributed,
    experiment,
    overrides,
    scoring,
)
from leakjax.types import ConfigError, NumericalError

_CONFIG = flags.DEFINE_string("config", None, "Experiment config file (get_config), [:preset].")
_WORKDIR = flags.DEFINE_string("workdir", None, "New or empty directory for all outputs.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue an interrupted run in --workdir.")
_DEBUG = flags.DEFINE_bool("debug", False, "Run without jit (jax.disable_jit), NaN checks on.")
_LIST_HELP = "Print the attacks (or one's settings) or the defenses with their defaults."
_LIST = flags.DEFINE_enum("list", None, ["attacks", "defenses"], _LIST_HELP)
distributed.define_flags()  # --coordinator_address, --num_processes, --process_id
for _name in distributed.FLAG_NAMES:
    flags.declare_key_flag(_name)
compile_cache.define_flag()  # --jax_cache_dir
flags.declare_key_flag(compile_cache.FLAG)
_OVERRIDES: list[tuple[str, str]] = []  # the --config.KEY=VALUE pairs (`overrides.split`)


def _fail(error, code: int = 2) -> typing.NoReturn:
    """One line on stderr (the first of ``error``'s message) and exit ``code``."""
    lines = str(error).splitlines() or [type(error).__name__]
    print(f"leakjax: error: {lines[0]}", file=sys.stderr)
    sys.exit(code)


def _list_attacks() -> None:
    """Every attack, or the settings of the one the command line or config file names."""
    names = [v for k, v in _OVERRIDES if k == "attack.name"]
    if _CONFIG.value is not None:
        names = [str(overrides.apply(config_files.load(_CONFIG.value), _OVERRIDES)[0].attack.name)]
    print("\n".join(attacks.listing(names[-1] if names and names[-1] != "none" else None)))


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _LIST.value == "defenses":
        print("\n".join(["none          no defense (plain FedAvg)", *defenses.describe_all()]))
        return
    try:
        if _LIST.value == "attacks":
            return _list_attacks()
        if _CONFIG.value is None:
            _fail("--config is required (e.g. --config=configs/quickstart.py)")
        config, notes = overrides.apply(config_files.load(_CONFIG.value), _OVERRIDES)
        if not _WORKDIR.value:
            _fail("--workdir is required (a new or empty directory)")
        distributed.start_from_flags()  # before any other JAX use
    except ConfigError as e:
        _fail(e)
    if not _DEBUG.value:  # "Unable to initialize backend 'tpu'" on every CPU run
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    compile_cache.enable_from_flag()
    jax.config.update("jax_debug_nans", _DEBUG.value)
    workdir = os.path.expanduser(_WORKDIR.value)  # once: a quoted '~/runs/x' is the home's
    try:
        with jax.disable_jit(_DEBUG.value):
            summary = experiment.run(config, workdir, resume=_RESUME.value, notes=notes)
    except ConfigError as e:  # includes DataError
        _fail(e)
    except NumericalError as e:
        _fail(e, code=3)
    except KeyboardInterrupt as e:  # includes attacks.signals.Interrupted (SIGINT / SIGTERM)
        _fail(f"{e or 'interrupted'}; continue with the same flags plus --resume", code=130)
    print(scoring.summary_line(summary))
    if distributed.is_main_process():
        print(f"results in {workdir}")


def _parse(argv):
    """absl's parser after `overrides.split`; a bad flag is one line and exit 2."""
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in argv[1:]):
        own = flags.FLAGS.module_help(sys.modules[__name__])
        print(
            f"{__doc__.strip()}\n\nUsage: leakjax --config=FILE.py[:preset] --workdir=DIR "
            "[--config.GROUP.KEY=VALUE ...] [--resume] [--debug]\n       leakjax --list="
            f"attacks [--config.attack.name=NAME]\n\n{own}\n\n(--helpfull: absl's and JAX's)"
        )
        sys.exit(0)
    try:
        rest, _OVERRIDES[:] = overrides.split(argv)
        return flags.FLAGS(rest)
    except (ConfigError, flags.Error) as e:
        _fail(e)


def entry() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    entry()
