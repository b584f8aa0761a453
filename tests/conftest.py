"""Test configuration: persistent compilation cache, shared real-data fixtures."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

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


@pytest.fixture
def cli_refuses(tmp_path):
    """``cli_refuses(*flags, words=...)``: `leakjax` on the tiny quickstart with ``flags``
    must exit 2 with one line on stderr that contains ``words``, and write no workdir."""

    def check(*flags: str, words: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        work = tmp_path / "run"
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "leakjax",
                "--config=configs/quickstart.py:tiny",
                f"--workdir={work}",
                *flags,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
        assert words in lines[0], lines[0]
        assert not work.exists()

    return check
