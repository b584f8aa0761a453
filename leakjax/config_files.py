"""Where the experiment configs live, so that ``--config=quickstart.py`` works from a wheel.

The repository keeps them in ``configs/``; pyproject.toml ships that folder inside the package
as ``leakjax/configs`` (``package-dir``), so an installed leakjax has them next to its modules
and a source checkout (or an editable install) has them beside the package.
"""

from __future__ import annotations

import pathlib

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
