"""Writing an experiment's results: work directory, JSON/CSV/Markdown tables, arrays, figures.

Every writer is atomic: it writes a temporary file in the destination directory and
``os.replace``-s it onto the destination, so a reader (or a crashed run) never sees a
half-written file, and a failed write leaves any earlier file untouched. Nothing here
deletes user files; :func:`prepare_workdir` refuses to reuse a non-empty directory.

The figures (``save_grid``, ``save_image_grid``, ``plot_curves``, ...) are in
:mod:`leakjax.figures`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leakjax.atomic import PathLike
from leakjax.atomic import atomic_open as _atomic
from leakjax.types import ConfigError

__all__ = [
    "format_markdown_table",
    "load_npz",
    "prepare_workdir",
    "scalars",
    "save_npz",
    "write_csv",
    "write_json",
    "write_markdown_table",
]

# --------------------------------------------------------------------------- files


def prepare_workdir(path: PathLike) -> pathlib.Path:
    """Creates a fresh work directory for one run.

    Args:
        path: Directory to create (parents too). It may exist only if it is empty.

    Returns:
        The directory as a ``pathlib.Path``.

    Raises:
        ConfigError: ``path`` is a non-empty directory or not a directory. Nothing is
            deleted or modified in that case.
    """
    workdir = pathlib.Path(path).expanduser()
    if workdir.exists():
        if not workdir.is_dir():
            raise ConfigError(f"workdir {workdir} exists and is not a directory")
        if any(workdir.iterdir()):
            raise ConfigError(f"workdir {workdir} is not empty; choose a new --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _jsonable(obj: Any, where: str) -> Any:
    """Converts numpy/jax values to JSON types; rejects NaN/Inf naming the key path."""
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise TypeError(f"JSON key at {where} must be a string, got {type(key).__name__}")
            out[key] = _jsonable(value, f"{where}.{key}")
        return out
    if isinstance(obj, str | bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite value {obj} at {where}; sanitize before write_json")
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if hasattr(obj, "__array__") and hasattr(obj, "dtype") and hasattr(obj, "shape"):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError(f"object array at {where} is not JSON-serialisable")
        return _jsonable(arr.tolist(), where)
    raise TypeError(f"value at {where} of type {type(obj).__name__} is not JSON-serialisable")


def write_json(path: PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically.

    NumPy / JAX scalars and arrays become numbers and (nested) lists, tuples become lists,
    paths become strings. NaN and Inf are refused (strict JSON): callers sanitize first.

    Args:
        path: Destination file.
        obj: JSON-like value.

    Raises:
        ValueError: a NaN/Inf value; the message names its key path (e.g. ``$.psnr[3]``).
            The destination is not touched.
        TypeError: a value that has no JSON form.
    """
    text = json.dumps(_jsonable(obj, "$"), indent=2, allow_nan=False) + "\n"
    with _atomic(path, "w") as fh:
        fh.write(text)


_RESERVED_NPZ = frozenset({"file", "allow_pickle", "args", "kwds"})


def save_npz(path: PathLike, **arrays: Any) -> None:
    """Saves arrays with ``np.savez_compressed``, atomically and without pickles.

    The file is written exactly at ``path`` (no ``.npz`` suffix is appended). JAX
    arrays are converted; ml_dtypes (e.g. bfloat16) are stored as float32.

    Args:
        path: Destination file.
        **arrays: Name -> array. Names ``file`` and ``allow_pickle`` are reserved by numpy.

    Raises:
        ValueError: an object array (would need pickle), or a reserved name.
    """
    out = {}
    for name, value in arrays.items():
        if name in _RESERVED_NPZ:
            raise ValueError(f"save_npz: array name {name!r} is reserved by numpy.savez")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"save_npz: array {name!r} has dtype object; it needs pickle")
        if type(arr.dtype).__module__.startswith("ml_dtypes") or "bfloat16" in str(arr.dtype):
            arr = arr.astype(np.float32)
        out[name] = arr
    with _atomic(path, "wb") as fh:
        np.savez_compressed(fh, **out)


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Loads every array of an ``.npz`` file (``allow_pickle=False``).

    Args:
        path: File written by :func:`save_npz` (or any pickle-free npz).

    Returns:
        Dict name -> array.

    Raises:
        ConfigError: the file does not exist.
    """
    src = pathlib.Path(path).expanduser()
    if not src.is_file():
        raise ConfigError(f"npz file {src} does not exist")
    with np.load(src, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list | tuple | dict | np.ndarray):
        return json.dumps(_jsonable(value, "$"))
    return value


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return [str(c) for c in columns]
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def scalars(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without its list and dict values: a summary as one CSV row."""
    return {k: v for k, v in row.items() if not isinstance(v, list | dict)}


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes rows as CSV, atomically; the header is the union of keys in first-seen order.

    Missing values are empty; lists/dicts/arrays are written as JSON strings. No rows gives
    an empty file.

    Args:
        path: Destination file.
        rows: Sequence of dicts.
    """
    rows = [{str(k): v for k, v in row.items()} for row in rows]
    header = _columns(rows, None)
    buf = io.StringIO()
    if header:
        writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    with _atomic(path, "w") as fh:
        fh.write(buf.getvalue())


def _md(value: Any, float_format: str) -> str:
    value = _cell(value)
    if value is None:
        return ""
    if isinstance(value, float):
        text = format(value, float_format)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    float_format: str = ".4g",
) -> str:
    """Formats rows as a GitHub-flavoured Markdown table.

    Args:
        rows: Sequence of dicts.
        columns: Columns to show, in order (default: union of keys, first-seen order).
        float_format: Format spec for floats.

    Returns:
        The table, ending in a newline (empty string when there are no columns).
    """
    cols = _columns(rows, columns)
    if not cols:
        return ""
    lines = [
        "| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
        "|" + "|".join(" --- " for _ in cols) + "|",
    ]
    for row in rows:
        row = {str(k): v for k, v in row.items()}
        lines.append("| " + " | ".join(_md(row.get(c), float_format) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_markdown_table(
    path: PathLike,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    float_format: str = ".4g",
) -> None:
    """Writes :func:`format_markdown_table` output to ``path``, atomically."""
    text = format_markdown_table(rows, columns, float_format)
    with _atomic(path, "w") as fh:
        fh.write(text)
