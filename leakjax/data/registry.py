"""Image classification data sets as numpy arrays: one registry, several ways to read them.

``load(name, data_dir, source)`` returns a :class:`Dataset` of uint8 NHWC images and
int32 labels. Sources:

- ``'builtin'``: ``digits``, scikit-learn's 8x8 hand-written digits, shipped with
  scikit-learn, so it works offline (the quickstart uses it).
- ``'official'``: the files as their authors distribute them: MNIST / Fashion-MNIST IDX
  files (gzipped or not), the CIFAR-10 / CIFAR-100 "python version" pickles (read
  through a restricted unpickler that can only rebuild plain numeric numpy arrays), and
  the ``tiny-imagenet-200`` folder of JPEGs.
- ``'tfds'``: a TensorFlow Datasets build already prepared in ``array_record`` (random
  access) or ``tfrecord`` format, read without TensorFlow. Besides the registered names,
  ``'tfds:<name>[/<config>]'`` loads any TFDS image-classification build (features from
  its ``supervised_keys``). Tiny ImageNet has no TFDS build: supply it as the official
  ``tiny-imagenet-200`` folder or as an ``.npz`` file.
- ``'npz'``: an ``.npz`` file with ``x_train, y_train, x_test, y_test``.
- ``'synthetic'``: random images, for shape tests only.

``source='auto'`` picks the built-in / synthetic / npz reader where the name or the
path says so, else the official files when ``data_dir`` holds them, else TFDS.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from leakjax.data.base import Dataset, DatasetInfo, PathLike, _Arrays, _resize, folder_finder
from leakjax.data.readers.cifar import (
    CIFAR10_FILES,
    CIFAR10_NAMES,
    CIFAR100_FILES,
    read_cifar10,
    read_cifar100,
)
from leakjax.data.readers.mnist_idx import idx_finder, read_idx_set
from leakjax.data.readers.npz import read_npz
from leakjax.data.readers.sklearn_digits import DIGIT_NAMES, make_synthetic, read_digits
from leakjax.data.readers.tfds import read_tfds
from leakjax.data.readers.tiny_imagenet import TINY_FILES, read_tiny_imagenet
from leakjax.types import ConfigError, DataError

SOURCES = ("auto", "builtin", "official", "tfds", "npz", "synthetic")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Registry entry: constants (None = from the data) and the sources that can read it."""

    num_classes: int | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None
    sources: tuple[str, ...]
    tfds_name: str | None = None
    find_official: Callable[[pathlib.Path], pathlib.Path | None] | None = None
    read_official: Callable[[pathlib.Path], _Arrays] | None = None
    expected: str = ""  # what the official reader looks for, for error messages
    default_size: int | None = None  # resize to this when image_size is None


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, _Spec] = {
    "digits": _Spec(10, None, None, DIGIT_NAMES, ("builtin",), default_size=16),
    "synthetic": _Spec(10, None, None, DIGIT_NAMES, ("synthetic",), default_size=32),
    "npz": _Spec(None, None, None, None, ("npz",)),
    "mnist": _Spec(
        10, (0.1307,), (0.3081,), DIGIT_NAMES, ("official", "tfds", "npz"), "mnist",
        idx_finder("mnist"), read_idx_set,
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... in DIR or DIR/mnist",
    ),
    "fashion_mnist": _Spec(
        10, (0.2860,), (0.3530,), _FASHION_NAMES, ("official", "tfds", "npz"), "fashion_mnist",
        idx_finder("fashion_mnist", "fashion-mnist"), read_idx_set,
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... in DIR or "
        "DIR/fashion_mnist",
    ),
    "cifar10": _Spec(
        10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_NAMES,
        ("official", "tfds", "npz"), "cifar10",
        folder_finder("cifar-10-batches-py", CIFAR10_FILES), read_cifar10,
        "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    ),
    "cifar100": _Spec(
        100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), None,
        ("official", "tfds", "npz"), "cifar100",
        folder_finder("cifar-100-python", CIFAR100_FILES), read_cifar100,
        "cifar-100-python/{train, test, meta}",
    ),
    "tiny_imagenet": _Spec(
        200, _IMAGENET_MEAN, _IMAGENET_STD, None, ("official", "npz"), None,
        folder_finder("tiny-imagenet-200", TINY_FILES), read_tiny_imagenet,
        "tiny-imagenet-200/{wnids.txt, train/, val/val_annotations.txt}, or an .npz file as "
        "data.data_dir (Tiny ImageNet has no TFDS build)",
    ),
    "imagenet": _Spec(
        1000, _IMAGENET_MEAN, _IMAGENET_STD, None, ("tfds", "npz"), "imagenet2012",
        default_size=224,
    ),
}  # fmt: skip


TFDS_PREFIX = "tfds:"


class _Names(list):
    """The registry's names; ``in`` also accepts any ``'tfds:<name>[/<config>]'``."""

    def __contains__(self, value: object) -> bool:
        return list.__contains__(self, value) or is_tfds_name(value)


def is_tfds_name(name: object) -> bool:
    """Whether ``name`` is ``'tfds:<name>[/<config>]'`` (any TFDS image-classification build)."""
    return (
        isinstance(name, str)
        and name.startswith(TFDS_PREFIX)
        and re.fullmatch(r"[a-z0-9_]+(/[A-Za-z0-9_.\-]+)?", name[len(TFDS_PREFIX) :]) is not None
    )


def names() -> list[str]:
    """Names :func:`load` accepts, sorted.

    Besides these, ``'tfds:<name>[/<config>]'`` names any TFDS image-classification build
    prepared under ``data.data_dir``; ``'tfds:beans' in names()`` is true.
    """
    return _Names(sorted(_REGISTRY))


def _spec(name: str) -> _Spec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_tfds_name(name):
        return _Spec(None, None, None, None, ("tfds",), name[len(TFDS_PREFIX) :])
    raise DataError(
        f"data.name={name!r} is unknown; allowed: {', '.join(names())}, or "
        f"'tfds:<name>[/<config>]' for a TFDS build in data.data_dir"
    )


def _resolve_source(name: str, spec: _Spec, source: str, root: pathlib.Path | None) -> str:
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} is unknown; allowed: {', '.join(SOURCES)}")
    if source != "auto":
        if source not in spec.sources:
            allowed = ", ".join(("auto", *spec.sources))
            raise ConfigError(
                f"data.source={source!r} is not available for data set {name!r}; allowed: {allowed}"
            )
        return source
    if len(spec.sources) == 1:
        return spec.sources[0]
    if root is not None and root.suffix == ".npz":
        return "npz"
    if root is not None and spec.find_official is not None and spec.find_official(root):
        return "official"
    if spec.tfds_name is not None:
        return "tfds"
    if root is None:
        raise DataError(f"data.data_dir is required for {name}; expected {spec.expected}")
    raise DataError(
        f"no {name} data found in data.data_dir={str(root)!r}; expected {spec.expected}"
    )


def _check_int(value: Any, key: str, low: int = 1) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low
    ):
        raise ConfigError(f"{key}={value!r} must be None or an integer >= {low}")


def load(
    name: str,
    data_dir: PathLike | None = None,
    source: str = "auto",
    *,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Loads a data set into memory.

    Args:
        name: one of :func:`names` (``'digits'``, ``'mnist'``, ``'cifar10'``, ``'npz'``, ...),
            or ``'tfds:<name>[/<config>]'`` for any TFDS image-classification build.
        data_dir: folder with the official files (or their parent), a TFDS data dir, or for
            ``'npz'`` the ``.npz`` file itself. Not needed by ``'digits'``/``'synthetic'``;
            ``None`` for TFDS means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
        source: ``'auto'`` or one of ``'builtin'``, ``'official'``, ``'tfds'``, ``'npz'``,
            ``'synthetic'`` (the ones the data set supports).
        image_size: resize images to ``image_size x image_size`` (bilinear). ``None`` keeps
            the native size, except ``digits`` (16), ``synthetic`` (32) and ImageNet (224,
            shorter side resized then center cropped).
        seed: seeds the ``digits`` train/test split and the ``synthetic`` images.
        limit: keep at most this many examples of each split (the first ones); for large
            TFDS builds only these are decoded.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: unknown name, missing or unreadable data (the message names the path).
        ConfigError: a bad ``source``, ``image_size`` or ``limit``.
    """
    spec = _spec(name)
    _check_int(image_size, "data.image_size")
    _check_int(limit, "data.limit")
    root = pathlib.Path(data_dir).expanduser() if data_dir is not None else None
    chosen = _resolve_source(name, spec, source, root)
    if chosen in ("official", "npz") and root is None:
        raise DataError(f"data.data_dir is required for {name} from source {chosen!r}")
    if chosen in ("official", "npz", "tfds") and root is not None and not root.exists():
        raise DataError(f"data.data_dir={str(root)!r} does not exist (data set {name})")
    # Default sizes apply where the reader must pick one (built-ins, variable-size TFDS).
    size = image_size
    if size is None and chosen in ("builtin", "synthetic", "tfds"):
        size = spec.default_size

    if chosen == "builtin":
        arrays = read_digits(size, seed)
    elif chosen == "synthetic":
        arrays = make_synthetic(size, seed)
    elif chosen == "npz":
        arrays = read_npz(root)
    elif chosen == "official":
        folder = spec.find_official(root)
        if folder is None:
            raise DataError(
                f"no official {name} files in data.data_dir={str(root)!r}; expected {spec.expected}"
            )
        arrays = spec.read_official(folder)
    else:
        # Builds whose images may differ in size are resized image by image as decoded.
        fit_size = size if spec.default_size or spec.num_classes is None else None
        try:
            arrays = read_tfds(spec.tfds_name, root, limit, fit_size)
        except DataError as err:
            if source != "auto" or spec.find_official is None or root is None:
                raise
            raise DataError(
                f"no official {name} files in data.data_dir={str(root)!r} (expected "
                f"{spec.expected}), and {err}"
            ) from err

    x_train, y_train, x_test, y_test, class_names = arrays
    if limit is not None:
        x_train, y_train, x_test, y_test = (
            x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
        )  # fmt: skip
    if size is not None and chosen not in ("builtin", "synthetic"):
        x_train, x_test = _resize(x_train, size), _resize(x_test, size)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{name}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} "
            f"differ in shape"
        )
    if x_train.shape[0] == 0:
        raise DataError(f"{name}: the training split is empty")
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)

    num_classes = spec.num_classes
    if num_classes is None and chosen == "tfds" and class_names:
        num_classes = len(class_names)  # the build's ClassLabel
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max(initial=0))) + 1
    channels = x_train.shape[-1]
    mean, std = spec.mean, spec.std
    if mean is None or len(mean) != channels:
        pixels = x_train.reshape(-1, channels).astype(np.float64) / 255.0
        mean = tuple(float(v) for v in pixels.mean(axis=0))
        std = tuple(float(max(v, 1e-3)) for v in pixels.std(axis=0))
    if class_names is None or len(class_names) != num_classes:
        class_names = spec.class_names
    if class_names is None or len(class_names) != num_classes:
        class_names = tuple(str(i) for i in range(num_classes))
    info = DatasetInfo(
        name=name,
        num_classes=num_classes,
        image_shape=tuple(int(d) for d in x_train.shape[1:]),
        mean=tuple(mean),
        std=tuple(std),
        class_names=tuple(class_names),
        source=chosen,
    )
    return Dataset(
        train_images=np.ascontiguousarray(x_train),
        train_labels=y_train,
        test_images=np.ascontiguousarray(x_test),
        test_labels=y_test,
        info=info,
    )
