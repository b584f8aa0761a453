"""Where a result came from: library versions, the leakjax commit, the device, and the
run's ``config.json``."""

from __future__ import annotations

import json
import pathlib
import platform
import subprocess
import sys
from importlib import metadata

import jax

from leakjax import distributed, report
from leakjax.config import resolved_attack

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
    devs = distributed.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devs[0].device_kind,
        "num_devices": len(devs),  # every process's (jax.distributed)
        "num_processes": distributed.process_count(),
    }


def resolved_config(config) -> dict:
    """The config as JSON types with ``attack_settings``, the attack's bound settings."""
    resolved = json.loads(config.to_json_best_effort())
    settings = {
        k: list(v) if isinstance(v, tuple) else v for k, v in resolved_attack(config).items()
    }
    resolved["attack_settings"] = json.loads(json.dumps(settings))
    return resolved


def write_config(config, workdir) -> None:
    """config.json: the resolved config, the attack's bound settings, versions, device, argv."""
    resolved = resolved_config(config)
    resolved["_meta"] = {"versions": versions(), "device": device_info(), "argv": sys.argv}
    report.write_json(pathlib.Path(workdir) / "config.json", resolved)
