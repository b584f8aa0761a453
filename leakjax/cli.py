"""Command line: ``leakjax --config=configs/quickstart.py --workdir=runs/qs``.

Flags override config fields: ``--config.fl.num_clients=100``; every setting of the chosen
attack can be set the same way (``--config.attack.reorder=2``) even when the config file
leaves it out. A preset after a colon is passed to ``get_config``: ``--config=configs/x.py:cpu``.
A config path that does not exist here names the packaged configs: ``--config=quickstart.py``
or ``--config=paper/fig07_ig_gradient.py:cpu`` work from a pip install.

Exit codes: 0 done; 2 bad input (one line on stderr, nothing written); 3 numerical failure
(every reconstruction NaN/Inf); 130 interrupted (continue with the same flags plus --resume).
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import typing

import jax
from absl import app, flags
from ml_collections import config_flags

from leakjax import attacks, config_files, defenses, distributed, experiment
from leakjax import settings as settings_lib
from leakjax.attacks.registry import RUN_KEYS
from leakjax.config import NO_ATTACK, unknown_key
from leakjax.defenses import describe_all
from leakjax.types import ConfigError, NumericalError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (a get_config() .py file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "New or empty directory for all outputs.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue an interrupted run in --workdir (same config)."
)
_DEBUG = flags.DEFINE_bool("debug", False, "Run without jit (jax.disable_jit) and with NaN checks.")
_LIST = flags.DEFINE_enum(
    "list",
    None,
    ["attacks", "defenses"],
    "Print the attacks (or one attack's settings with "
    "--config.attack.name) or the defenses with their defaults, and exit.",
)
distributed.define_flags()  # --coordinator_address, --num_processes, --process_id
for _name in distributed.FLAG_NAMES:
    flags.declare_key_flag(_name)
_CACHE = flags.DEFINE_string(
    "jax_cache_dir",
    os.environ.get("LEAKJAX_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "leakjax" / "jax")),
    "Persistent XLA compilation cache ('' disables).",
)


def _fail(msg: str, code: int = 2) -> None:
    print(f"leakjax: error: {msg}", file=sys.stderr)
    sys.exit(code)


# --config.attack.<key>=<value> for keys the config file does not set: applied by
# `_apply_attack_overrides` once the attack is known (absl's config flags accept only
# existing fields).
_ATTACK_OVERRIDES: dict[str, str] = {}
_ATTACK_PREFIX = "--config.attack."
# likewise --config.defense.<key>=<value>: a setting of a chained defense
_DEFENSE_OVERRIDES: dict[str, str] = {}
_DEFENSE_PREFIX = "--config.defense."
# --config.attack.name=X without --config (absl's config flags need a file): for --list=attacks
_LIST_ATTACK: list[str] = []


def _split_attack_overrides(argv: list[str]) -> list[str]:
    kept = []
    no_file = not any(a == "--config" or a.startswith("--config=") for a in argv)
    for arg in argv:
        if no_file and arg.startswith(_ATTACK_PREFIX + "name="):  # --list=attacks, no file
            _LIST_ATTACK.append(arg.split("=", 1)[1])
            continue
        if arg.startswith(_ATTACK_PREFIX) and "=" in arg:
            key, value = arg[len(_ATTACK_PREFIX) :].split("=", 1)
            if key not in RUN_KEYS and "." not in key:
                _ATTACK_OVERRIDES[key] = value
                continue
        if arg.startswith(_DEFENSE_PREFIX) and "=" in arg:
            key, value = arg[len(_DEFENSE_PREFIX) :].split("=", 1)
            if key != "name" and "." not in key:
                _DEFENSE_OVERRIDES[key] = value
                continue
        kept.append(arg)
    if argv is sys.argv or argv == sys.argv:  # ml_collections reads overrides off sys.argv
        sys.argv[:] = kept
    return kept


# the config file as its get_config returns it (before command-line overrides): loaded by
# `_parse` through `config_files.load`, so that a bad file is one line naming it
_FILE_CONFIG: list = []


def _file_attack_name() -> str | None:
    """``attack.name`` as the config file sets it (before command-line overrides)."""
    if not _FILE_CONFIG or "attack" not in _FILE_CONFIG[0]:
        return None
    return str(_FILE_CONFIG[0].attack.get("name"))


def _apply_attack_overrides(config) -> list[str]:
    """Bind the attack's command-line settings into ``config.attack``.

    When ``--config.attack.name`` names another attack than the config file's, the file's
    attack-specific keys were written for that other attack: they are dropped, so the chosen
    attack runs with its own defaults plus the command line's settings. Returns the note that
    says so (printed once every check has passed: a rejected run prints only its error).
    """
    a = config.attack
    name = str(a.name)
    if name != NO_ATTACK and name not in attacks.names():
        raise ConfigError(f"attack.name={name!r} is not one of {(*attacks.names(), NO_ATTACK)}")
    file_name = _file_attack_name()
    notes = []
    with config.unlocked():
        if file_name is not None and file_name != name:
            dropped = sorted(k for k in a.keys() if k not in RUN_KEYS)
            for k in dropped:
                del a[k]
            if dropped:
                notes.append(
                    f"leakjax: note: attack.name={name!r} overrides the file's {file_name!r}; "
                    f"its settings {', '.join('attack.' + k for k in dropped)} are not applied"
                )
        if not _ATTACK_OVERRIDES:
            return notes
        if name == NO_ATTACK:
            key = next(iter(_ATTACK_OVERRIDES))
            raise ConfigError(f"attack.{key} is set but attack.name={NO_ATTACK!r}")
        spec = attacks.get(name)
        fields = settings_lib.keys(spec.settings)
        hints = typing.get_type_hints(spec.settings)
        for key, text in _ATTACK_OVERRIDES.items():
            if key not in fields or key == "labels":
                allowed = ", ".join(k for k in fields if k != "labels")
                raise ConfigError(
                    f"attack.{key} is not a setting of {name} (its settings: {allowed})"
                )
            a[key] = settings_lib.parse_value(f"attack.{key}", text, hints[fields[key].name])
    return notes


def _apply_defense_overrides(config) -> None:
    """Bind ``--config.defense.<key>=value`` by the type the chained defense declares."""
    if not _DEFENSE_OVERRIDES:
        return
    if "defense" not in config:
        with config.unlocked():
            config.defense = {"name": "none"}
    chain = [defenses.get(n) for n in defenses.parse_names(config.defense.get("name", "none"))]
    with config.unlocked():
        for key, text in _DEFENSE_OVERRIDES.items():
            owner = next((c for c in chain if key in settings_lib.keys(c)), None)
            if owner is None:
                named = ", ".join(c.name for c in chain) or "none"
                raise ConfigError(
                    f"defense.{key} is not a setting of the chained defenses ({named}); "
                    "`leakjax --list=defenses` lists each defense's settings"
                )
            field = settings_lib.keys(owner)[key]
            hint = typing.get_type_hints(owner)[field.name]
            config.defense[key] = settings_lib.parse_value(f"defense.{key}", text, hint)


def _list_attacks(config) -> None:
    """Every attack, or the settings of one: the one ``--config.attack.name`` names, else the
    config file's (an unknown name is an error, exit 2)."""
    name = _LIST_ATTACK[-1] if _LIST_ATTACK else None
    if name is None and config is not None:
        name = str(config.attack.name)
    if name is not None and name != NO_ATTACK:
        if name not in attacks.names():
            _fail(f"attack.name={name!r} is not one of {(*attacks.names(), NO_ATTACK)}")
        spec = attacks.get(name)
        print(f"{name}: {spec.paper}; modes {spec.modes}; labels {spec.allowed_labels()}")
        print("\n".join(spec.describe()))
        return
    for n in attacks.names():
        spec = attacks.get(n)
        print(f"{n:8s} {spec.paper} (modes: {', '.join(spec.modes)})")


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _LIST.value == "attacks":
        _list_attacks(_CONFIG.value)
        return
    if _LIST.value == "defenses":
        print("\n".join(["none          no defense (plain FedAvg)"] + describe_all()))
        return
    if _CONFIG.value is None:
        _fail("--config is required (e.g. --config=configs/quickstart.py)")
    try:  # ml_collections defers config-file load errors to the first access
        _ = "data" in _CONFIG.value
    except Exception as e:  # noqa: BLE001
        _fail(_one_line(e))

    try:
        notes = _apply_attack_overrides(_CONFIG.value)
        _apply_defense_overrides(_CONFIG.value)
    except ConfigError as e:
        _fail(str(e).splitlines()[0])
    if not _WORKDIR.value:
        _fail("--workdir is required (a new or empty directory)")
    workdir = os.path.expanduser(_WORKDIR.value)  # once: a quoted '~/runs/x' is the home's
    try:  # a multi-process run: jax.distributed before any JAX use
        distributed.start_from_flags(resume=_RESUME.value)
    except ConfigError as e:
        _fail(str(e))

    if not _DEBUG.value:  # "Unable to initialize backend 'tpu'" on every CPU run
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

    try:
        if _DEBUG.value:
            jax.config.update("jax_debug_nans", True)
            with jax.disable_jit():
                summary = experiment.run(_CONFIG.value, workdir, resume=_RESUME.value, notes=notes)
        else:
            summary = experiment.run(_CONFIG.value, workdir, resume=_RESUME.value, notes=notes)
    except ConfigError as e:  # includes DataError
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except NumericalError as e:
        _fail(str(e), code=3)
    except KeyboardInterrupt as e:  # includes attacks.signals.Interrupted (SIGINT / SIGTERM)
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
        "final_tracked_fraction",
        "final_test_acc",
        "defense",
        "epsilon",
        "wall_seconds",
    )
    print("summary: " + ", ".join(f"{k}={summary.get(k)}" for k in keys if k in summary))
    if distributed.is_main_process():
        print(f"results in {workdir}")


def _one_line(e: BaseException) -> str:
    """The informative line of an error (the last line of an embedded traceback)."""
    # ml_collections' unknown override: KeyError("'lrr'\nDid you mean ...") (in an AttributeError)
    unknown = next((x for x in (e, *e.args, e.__cause__) if isinstance(x, KeyError)), None)
    if unknown is not None and unknown.args:
        return _unknown_field(str(unknown.args[0]).splitlines()[0].strip("\"'"))
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if any(ln.startswith("Traceback") for ln in lines):
        tail = lines[-1]
        head = lines[0].split(":")[0]  # "flag --config=..."
        return f"{head}: {tail}" if head.startswith("flag") else tail
    if len(lines) > 1 and any("No such file" in ln for ln in lines):
        return f"config file not found: {lines[-1]}"
    return " ".join(lines)


_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")


def _usage() -> str:
    """The program's own flags (absl's --help lists only the launcher script's)."""
    own = flags.FLAGS.module_help(sys.modules[__name__])
    return (
        f"{__doc__.strip()}\n\nUsage: leakjax --config=FILE.py[:preset] --workdir=DIR "
        "[--config.GROUP.KEY=VALUE ...] [--resume] [--debug]\n       leakjax --list=attacks "
        "[--config=FILE --config.attack.name=NAME]\n\n"
        f"{own}\n\n(--helpfull lists absl's and JAX's flags too.)"
    )


def _unknown_field(field: str) -> str:
    """'fl.lrr is not a config setting; did you mean fl.lr?' with the full key, read off the
    command line (`leakjax.config.unknown_key`, as for a config file's unknown key)."""
    for arg in sys.argv[1:]:
        path = arg.split("=", 1)[0].removeprefix("--config.")
        if arg.startswith("--config.") and path.split(".")[-1] == field:
            return unknown_key(path)
    return f"unknown config field {field!r} (the schema is leakjax/config.py)"


def _resolve_config_args(argv: list[str]) -> list[str]:
    """``--config=PATH[:preset]`` with PATH resolved against the packaged configs when it does
    not exist relative to the working directory (`leakjax.config_files.resolve`)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + config_files.resolve(arg[len("--config=") :])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = config_files.resolve(out[i + 1])
    if argv is sys.argv:  # ml_collections reads the config path and overrides off sys.argv
        sys.argv[:] = out
        return sys.argv
    return out


def _parse(argv):
    """absl's parser, but a bad flag / config file / override is one line and exit 2."""
    if any(arg in _HELP_FLAGS for arg in argv[1:]):
        print(_usage())
        sys.exit(0)

    argv = _resolve_config_args(argv)
    for i, arg in enumerate(argv[1:], 1):  # the file first: its errors name it, one line
        spec = arg[len("--config=") :] if arg.startswith("--config=") else None
        if arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
        if spec is not None:
            try:
                _FILE_CONFIG[:] = [config_files.load(spec)]
            except ConfigError as e:
                _fail(str(e))
    try:
        return flags.FLAGS(_split_attack_overrides(argv))
    except Exception as e:  # noqa: BLE001 - flags.Error, config file errors, bad overrides
        _fail(_one_line(e))


def entry() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    entry()
