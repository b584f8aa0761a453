"""Atomic file writes: a temporary file in the destination directory, ``os.replace``-d on success.

A reader (or a crashed run) never sees a half-written file, and a failed write leaves any
earlier file untouched. Shared by :mod:`leakjax.report` (tables, JSON, npz) and
:mod:`leakjax.figures` (PNGs).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

PathLike = str | os.PathLike


def umask() -> int:
    """The process umask, read without changing it where /proc allows (thread safety)."""
    with contextlib.suppress(OSError, ValueError):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[Any]:
    """Yields a temporary file next to ``path``; on success it replaces ``path`` whole."""
    dest = pathlib.Path(path).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        kwargs = {"newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give ordinary permissions
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
