"""Where the experiment configs live, so that ``--config=quickstart.py`` works from a wheel.

The repository keeps them in ``configs/``; pyproject.toml ships that folder inside the package
as ``leakjax/configs`` (``package-dir``), so an installed leakjax has them next to its modules
and a source checkout (or an editable install) has them beside the package.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pathlib

import ml_collections

from leakjax.types import ConfigError

_PACKAGE = pathlib.Path(__file__).resolve().parent


def root() -> pathlib.Path:
    """The configs folder: ``leakjax/configs`` of an installed wheel, else ``configs/`` of the
    source checkout this package was imported from."""
    for candidate in (_PACKAGE / "configs", _PACKAGE.parent / "configs"):
        if (candidate / "quickstart.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"no leakjax configs next to {_PACKAGE} (expected {_PACKAGE / 'configs'} in an "
        f"installed package or {_PACKAGE.parent / 'configs'} in a checkout)"
    )


def resolve(spec: str) -> str:
    """``path.py[:preset]`` -> the same spec with ``path`` made to exist where possible.

    A path that exists (relative to the working directory, or absolute) is kept. Otherwise a
    relative path is looked up in :func:`root`, with or without a leading ``configs/``:
    ``quickstart.py``, ``paper/fig07_ig_gradient.py:cpu`` and ``configs/quickstart.py`` all
    name the packaged files. A spec that matches nothing is returned unchanged, so the caller
    reports the path the user typed.
    """
    path, sep, preset = spec.partition(":")
    p = pathlib.Path(path)
    if not path or p.exists() or p.is_absolute():
        return spec
    parts = p.parts[1:] if p.parts[0] == "configs" and len(p.parts) > 1 else p.parts
    try:
        candidate = root().joinpath(*parts)
    except FileNotFoundError:
        return spec
    return f"{candidate}{sep}{preset}" if candidate.is_file() else spec


def load(spec: str):
    """``path.py[:preset]`` -> the ``ml_collections.ConfigDict`` its ``get_config`` returns.

    Every failure is a one-line `ConfigError` naming the file and the cause: a missing or
    unreadable file, one that is not Python, one without ``get_config``, a ``get_config`` that
    raises (its exception type and message), or one that returns anything but a ConfigDict.
    """
    path, _, preset = resolve(spec).partition(":")
    if not pathlib.Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")

    def cause(e: BaseException) -> str:
        msg = " ".join(str(e).split())
        return f"{type(e).__name__}: {msg[:300]}" if msg else type(e).__name__

    try:
        loader = importlib.machinery.SourceFileLoader("_leakjax_config_file", path)
        spec_ = importlib.util.spec_from_loader(loader.name, loader)
        module = importlib.util.module_from_spec(spec_)
        loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - a syntax error, a binary file, a failing import
        raise ConfigError(f"config file {path} cannot be loaded ({cause(e)})") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path} defines no get_config() function")
    try:
        config = get_config(preset) if preset else get_config()
    except Exception as e:  # noqa: BLE001 - the file's own error, with its type and message
        call = f"get_config({preset!r})" if preset else "get_config()"
        raise ConfigError(f"config file {path}: {call} raised {cause(e)}") from None
    return as_config(config, f"config file {path}: get_config()")


def as_config(value, where: str):
    """``value`` if it is an ``ml_collections.ConfigDict``, else a one-line `ConfigError`
    saying that ``where`` (e.g. ``config file F: get_config()``) returned something else."""
    if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(
            f"{where} returned a {type(value).__name__}, not an ml_collections.ConfigDict "
            "(start from leakjax.config.base_config())"
        )
    return value
