"""MNIST / Fashion-MNIST official IDX files (gzipped or not)."""

from __future__ import annotations

import gzip
import pathlib
import zlib
from collections.abc import Callable

import numpy as np

from leakjax.data.base import PathLike, _Arrays, _oneline
from leakjax.types import DataError

_IDX_FILES = {
    "x_train": ("train-images", 3),
    "y_train": ("train-labels", 1),
    "x_test": ("t10k-images", 3),
    "y_test": ("t10k-labels", 1),
}


def _idx_path(folder: pathlib.Path, stem: str, ndim: int) -> pathlib.Path | None:
    for sep in ("-", "."):
        for ext in (".gz", ""):
            path = folder / f"{stem}{sep}idx{ndim}-ubyte{ext}"
            if path.is_file():
                return path
    return None


def idx_finder(*subdirs: str) -> Callable[[pathlib.Path], pathlib.Path | None]:
    def find(root: pathlib.Path) -> pathlib.Path | None:
        for folder in (root, *(root / s for s in subdirs)):
            if all(_idx_path(folder, stem, nd) for stem, nd in _IDX_FILES.values()):
                return folder
        return None

    return find


def read_idx(path: PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped if its name ends in ``.gz``) of unsigned bytes.

    Args:
        path: the file.

    Returns:
        uint8 array with the shape given by the file's header.

    Raises:
        DataError: the file is missing, truncated, or not an IDX file of unsigned bytes.
    """
    path = pathlib.Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {_oneline(err)}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx_set(folder: pathlib.Path) -> _Arrays:
    arrays = {}
    for key, (stem, ndim) in _IDX_FILES.items():
        path = _idx_path(folder, stem, ndim)
        arr = read_idx(path)
        if arr.ndim != ndim:
            raise DataError(f"{path}: expected {ndim} dimensions, header gives {arr.ndim}")
        arrays[key] = arr
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{folder}: {split} images ({x.shape[0]}) and labels ({y.shape[0]}) differ in count"
            )
        arrays[f"x_{split}"] = x[..., None]
    return _Arrays(**arrays)
