"""Compatibility module: the data set registry and readers, re-exported.

The code lives in :mod:`leakjax.data.registry` (``load``, ``names``, ``SOURCES``),
:mod:`leakjax.data.base` (``Dataset``, ``DatasetInfo``) and one module per reader under
:mod:`leakjax.data.readers`; this module keeps the old import paths working.
"""

from leakjax.data.base import Dataset, DatasetInfo, PathLike
from leakjax.data.readers.cifar import RestrictedUnpickler, safe_unpickle
from leakjax.data.readers.mnist_idx import read_idx
from leakjax.data.registry import SOURCES, is_tfds_name, load, names

__all__ = [
    "SOURCES",
    "Dataset",
    "DatasetInfo",
    "PathLike",
    "RestrictedUnpickler",
    "is_tfds_name",
    "load",
    "names",
    "read_idx",
    "safe_unpickle",
]
