"""Data sets, federated partitions and pixel normalization.

``load`` reads a data set into uint8 NHWC numpy arrays (built-in digits, official
files, TFDS builds in array_record or tfrecord format, also any image-classification
build as ``'tfds:<name>'``, npz with channel-first arrays transposed), ``partition``
splits it among clients (iid, Dirichlet, fixed classes) and ``gather_padded`` stacks
clients into padded arrays;
``normalize`` / ``denormalize`` / ``box`` convert between uint8 pixels, the
library's normalized float32 images and [0, 1] units.
"""

from leakjax.data.base import Dataset, DatasetInfo
from leakjax.data.partition import (
    METHODS,
    ClientArrays,
    Partition,
    gather_padded,
    partition,
    partition_from_config,
)
from leakjax.data.readers.cifar import RestrictedUnpickler, safe_unpickle
from leakjax.data.readers.mnist_idx import read_idx
from leakjax.data.registry import SOURCES, is_tfds_name, load, names
from leakjax.data.transforms import MODES, box, denormalize, normalization, normalize

__all__ = [
    "METHODS",
    "MODES",
    "SOURCES",
    "ClientArrays",
    "Dataset",
    "DatasetInfo",
    "Partition",
    "RestrictedUnpickler",
    "box",
    "denormalize",
    "gather_padded",
    "is_tfds_name",
    "load",
    "names",
    "normalization",
    "normalize",
    "partition",
    "partition_from_config",
    "read_idx",
    "safe_unpickle",
]
