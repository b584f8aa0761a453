"""Test configuration: persistent compilation cache, shared real-data fixtures."""

from __future__ import annotations

import os
import pathlib

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("JAX_ENABLE_X64", "0")
_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The real CIFAR-10 / MNIST subsets in ../shared/data (skips if absent)."""
    env = os.environ.get("LEAKJAX_SHARED_DATA")
    path = pathlib.Path(env) if env else SHARED_DATA
    if not (path / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real data not found at {path} (set LEAKJAX_SHARED_DATA)")
    return path
