"""Where a result came from: library versions, the leakjax commit, the device."""

from __future__ import annotations

import pathlib
import platform
from importlib import metadata

import jax

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "evosax", "ml-collections")


def versions() -> dict:
    out = {"python": platform.python_version(), "leakjax": _pkg("leakjax")}
    for name in _VERSIONED:
        out[name] = _pkg(name)
    return out


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """The leakjax checkout's commit (None outside a git checkout, e.g. a pip install)."""
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def provenance(config) -> dict:
    """What a result row needs to be reproduced: seed, config name, leakjax commit, versions."""
    return {
        "seed": int(config.seed),
        "config_name": str(config.get("name", "")),
        "leakjax_commit": git_commit(),
        **{f"version_{k}": v for k, v in versions().items()},
    }


def device_info() -> dict:
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devs[0].device_kind,
        "num_devices": len(devs),
    }
