"""CIFAR-10 / CIFAR-100 "python version" pickles, read through a restricted unpickler."""

from __future__ import annotations

import pathlib
import pickle
import re
from typing import Any

import numpy as np

from leakjax.data.base import PathLike, _Arrays, _oneline
from leakjax.types import DataError

CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` in a pickle: usable as ``_reconstruct``'s subtype only."""


def _only_plain_ndarray(subtype, shape, dtype):
    if subtype is not _NdarrayToken:
        raise pickle.UnpicklingError(f"refusing to rebuild array subtype {subtype!r}")
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct(np.ndarray, shape, dtype)


def _only_numeric_dtype(obj, *args):
    if isinstance(obj, bytes):
        obj = obj.decode("ascii")
    if not isinstance(obj, str) or not re.fullmatch(r"[<>|=]?[biuf]\d{0,2}", obj):
        raise pickle.UnpicklingError(f"refusing to rebuild dtype {obj!r}")
    return np.dtype(obj, *args)


def _only_latin1(obj, encoding="utf-8", *args):
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return obj.encode("latin1")


_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _only_plain_ndarray,
    ("numpy._core.multiarray", "_reconstruct"): _only_plain_ndarray,
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): _only_numeric_dtype,
    ("_codecs", "encode"): _only_latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR files: dicts, lists, str/bytes/ints, numeric arrays.

    Every global a pickle names is refused except what plain numeric numpy arrays
    need (``_reconstruct`` of exactly ``ndarray``, ``dtype`` of a bool/int/uint/float
    type code) and Python 3's latin1 encoding of bytes, so a file cannot make the
    loader call ``os.system``, ``eval`` or anything else.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Returns an allowed global or raises ``pickle.UnpicklingError``."""
        allowed = _PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never allowed."""
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_unpickle(path: PathLike) -> Any:
    """Loads a pickle with :class:`RestrictedUnpickler` (``encoding='bytes'``).

    Args:
        path: the file.

    Returns:
        The unpickled object; dictionary keys that were bytes are decoded to str.

    Raises:
        DataError: the file cannot be read, is corrupt, or names a forbidden global.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
    except OSError as err:
        raise DataError(f"cannot read {path}: {_oneline(err)}") from err
    except Exception as err:  # corrupt or hostile pickles raise many kinds of errors
        raise DataError(f"{path} is not a valid data pickle: {_oneline(err)}") from err
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


def _names(values: Any, path: pathlib.Path, key: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise DataError(f"{path}: '{key}' must be a list of names")
    return tuple(v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values)


def _cifar_batch(path: pathlib.Path, label_key: str, num_classes: int):
    batch = safe_unpickle(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected a dict with 'data' and '{label_key}'")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 [N, 3072] array")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
    labels = np.asarray(batch[label_key])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' must hold {data.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must be in [0, {num_classes})")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue): -> NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")


def read_cifar10(folder: pathlib.Path) -> _Arrays:
    parts = [_cifar_batch(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
    x_test, y_test = _cifar_batch(folder / "test_batch", "labels", 10)
    meta = safe_unpickle(folder / "batches.meta")
    names = CIFAR10_NAMES
    if isinstance(meta, dict) and "label_names" in meta:
        names = _names(meta["label_names"], folder / "batches.meta", "label_names")
    return _Arrays(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
        names,
    )


def read_cifar100(folder: pathlib.Path) -> _Arrays:
    x_train, y_train = _cifar_batch(folder / "train", "fine_labels", 100)
    x_test, y_test = _cifar_batch(folder / "test", "fine_labels", 100)
    meta = safe_unpickle(folder / "meta")
    names = None
    if isinstance(meta, dict) and "fine_label_names" in meta:
        names = _names(meta["fine_label_names"], folder / "meta", "fine_label_names")
    return _Arrays(x_train, y_train, x_test, y_test, names)
