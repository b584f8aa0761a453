"""Image classification data sets as numpy arrays: one registry, several ways to read them.

``load(name, data_dir, source)`` returns a :class:`Dataset` of uint8 NHWC images and
int32 labels. Sources:

- ``'builtin'``: ``digits``, scikit-learn's 8x8 hand-written digits, shipped with
  scikit-learn, so it works offline (the quickstart uses it).
- ``'official'``: the files as their authors distribute them: MNIST / Fashion-MNIST IDX
  files (gzipped or not), the CIFAR-10 / CIFAR-100 "python version" pickles (read
  through a restricted unpickler that can only rebuild plain numeric numpy arrays), and
  the ``tiny-imagenet-200`` folder of JPEGs.
- ``'tfds'``: a TensorFlow Datasets build already prepared in ``array_record`` format,
  read with random access and without TensorFlow. Tiny ImageNet has no TFDS build:
  supply it as the official ``tiny-imagenet-200`` folder or as an ``.npz`` file.
- ``'npz'``: an ``.npz`` file with ``x_train, y_train, x_test, y_test``.
- ``'synthetic'``: random images, for shape tests only.

``source='auto'`` picks the built-in / synthetic / npz reader where the name or the
path says so, else the official files when ``data_dir`` holds them, else TFDS.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from leakjax.types import ConfigError, DataError

SOURCES = ("auto", "builtin", "official", "tfds", "npz", "synthetic")
PathLike = str | os.PathLike

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_DIGIT_NAMES = tuple(str(i) for i in range(10))
_PREPARE_HINT = (
    "prepare it where downloads work: pip install 'leakjax[tfds-prepare]', then "
    "`tfds build {tfds} --data_dir=DIR --file_format=array_record` "
    "(or tfds.builder('{tfds}').download_and_prepare(file_format='array_record')) "
    "and copy DIR here"
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the library needs to know about a data set.

    Attributes:
        name: registry name (``'cifar10'``, ``'digits'``, ...).
        num_classes: number of classes; labels are in ``[0, num_classes)``.
        image_shape: ``(H, W, C)`` of the images as loaded (after any resizing).
        mean: per-channel mean in [0, 1] pixel units (published constants, or the
            training split's statistics where there are none).
        std: per-channel standard deviation in [0, 1] pixel units.
        class_names: one name per class.
        source: where the arrays came from: ``'builtin'``, ``'official'``, ``'tfds'``,
            ``'npz'`` or ``'synthetic'``.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    source: str


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A data set in memory: uint8 NHWC images and int32 labels, train and test splits.

    Attributes:
        train_images: uint8 ``[N, H, W, C]``.
        train_labels: int32 ``[N]``.
        test_images: uint8 ``[M, H, W, C]``.
        test_labels: int32 ``[M]``.
        info: the data set's :class:`DatasetInfo`.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    info: DatasetInfo

    def __post_init__(self):
        name = self.info.name
        for split, x, y in (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != tuple(self.info.image_shape):
                raise DataError(
                    f"{name} {split} images must be uint8 [N, *{tuple(self.info.image_shape)}], "
                    f"got {x.dtype} {x.shape}"
                )
            if y.dtype != np.int32 or y.shape != x.shape[:1]:
                raise DataError(
                    f"{name} {split} labels must be int32 [{x.shape[0]}], got {y.dtype} {y.shape}"
                )
            if y.size and (y.min() < 0 or y.max() >= self.info.num_classes):
                raise DataError(
                    f"{name} {split} labels must be in [0, {self.info.num_classes}), "
                    f"got [{y.min()}, {y.max()}]"
                )


class _Arrays(NamedTuple):
    """What a reader returns, before resizing and bookkeeping."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] | None = None


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


def _oneline(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


# ----------------------------------------------------------------------------- resizing


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 ``[N, H, W, C]`` to ``[N, size, size, C]`` (PIL, antialiased)."""
    from PIL import Image

    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, size, size, c), np.uint8)
    for i in range(n):
        if c == 3:
            out[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), Image.BILINEAR))
        else:
            for j in range(c):
                plane = Image.fromarray(np.ascontiguousarray(images[i, :, :, j]))
                out[i, :, :, j] = np.asarray(plane.resize((size, size), Image.BILINEAR))
    return out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes one ``[H, W, C]`` uint8 image so its shorter side is ``size``, center crops."""
    from PIL import Image

    h, w, c = image.shape
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    box = (left, top, left + size, top + size)
    planes = [image] if c == 3 else [image[:, :, j] for j in range(c)]
    out = []
    for plane in planes:
        resized = Image.fromarray(np.ascontiguousarray(plane)).resize((nw, nh), Image.BILINEAR)
        out.append(np.asarray(resized.crop(box)))
    return out[0] if c == 3 else np.stack(out, axis=-1)


# ----------------------------------------------------------------------------- IDX (MNIST)

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


def _idx_finder(*subdirs: str) -> Callable[[pathlib.Path], pathlib.Path | None]:
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


def _read_idx_set(folder: pathlib.Path) -> _Arrays:
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


# ----------------------------------------------------------------------------- CIFAR pickles


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


def _folder_finder(folder: str, required: Sequence[str]):
    def find(root: pathlib.Path) -> pathlib.Path | None:
        for candidate in (root / folder, root):
            if all((candidate / f).exists() for f in required):
                return candidate
        return None

    return find


_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")


def _read_cifar10(folder: pathlib.Path) -> _Arrays:
    parts = [_cifar_batch(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
    x_test, y_test = _cifar_batch(folder / "test_batch", "labels", 10)
    meta = safe_unpickle(folder / "batches.meta")
    names = _CIFAR10_NAMES
    if isinstance(meta, dict) and "label_names" in meta:
        names = _names(meta["label_names"], folder / "batches.meta", "label_names")
    return _Arrays(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
        names,
    )


def _read_cifar100(folder: pathlib.Path) -> _Arrays:
    x_train, y_train = _cifar_batch(folder / "train", "fine_labels", 100)
    x_test, y_test = _cifar_batch(folder / "test", "fine_labels", 100)
    meta = safe_unpickle(folder / "meta")
    names = None
    if isinstance(meta, dict) and "fine_label_names" in meta:
        names = _names(meta["fine_label_names"], folder / "meta", "fine_label_names")
    return _Arrays(x_train, y_train, x_test, y_test, names)


# ----------------------------------------------------------------------------- Tiny ImageNet

_TINY_FILES = ("wnids.txt", "train", "val/val_annotations.txt")


def _read_image_file(path: pathlib.Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return _fit(np.asarray(img.convert("RGB")), size)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot decode image {path}: {_oneline(err)}") from err


def _read_tiny_imagenet(folder: pathlib.Path) -> _Arrays:
    """Official layout; the labelled ``val`` split serves as the test split."""
    wnids = sorted(set((folder / "wnids.txt").read_text().split()))
    if not wnids:
        raise DataError(f"{folder / 'wnids.txt'} lists no classes")
    words = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    index = {w: i for i, w in enumerate(wnids)}
    image_ext = (".jpeg", ".jpg", ".png")
    train_files, train_labels = [], []
    for wnid in wnids:
        found = (folder / "train" / wnid / "images").glob("*")
        files = sorted(p for p in found if p.suffix.lower() in image_ext)
        if not files:
            raise DataError(f"no training images in {folder / 'train' / wnid / 'images'}")
        train_files += files
        train_labels += [index[wnid]] * len(files)
    test_files, test_labels = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise DataError(f"{folder / 'val' / 'val_annotations.txt'}: unknown class {fields[1]}")
        test_files.append(folder / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    return _Arrays(
        np.stack([_read_image_file(p, 64) for p in train_files]),
        np.asarray(train_labels),
        np.stack([_read_image_file(p, 64) for p in test_files]),
        np.asarray(test_labels),
        tuple(words.get(w, w) for w in wnids),
    )


# ----------------------------------------------------------------------------- TFDS


def _tfds_root(data_dir: pathlib.Path | None) -> pathlib.Path:
    if data_dir is not None:
        return data_dir
    env = os.environ.get("TFDS_DATA_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / "tensorflow_datasets"


def _find_tfds_build(root: pathlib.Path, tfds_name: str) -> pathlib.Path | None:
    """Newest ``root/name/[config/]X.Y.Z`` folder with a ``dataset_info.json``."""
    found = []
    for pattern in ("*/dataset_info.json", "*/*/dataset_info.json"):
        for info in (root / tfds_name).glob(pattern):
            if re.fullmatch(r"\d+\.\d+\.\d+", info.parent.name):
                found.append((tuple(int(v) for v in info.parent.name.split(".")), info.parent))
    return max(found)[1] if found else None


def _decode_split(source: Any, limit: int | None, size: int | None, where: str):
    count = len(source) if limit is None else min(limit, len(source))
    images, labels = [], []
    for start in range(0, count, 1024):
        keys = list(range(start, min(count, start + 1024)))
        for record in source.__getitems__(keys):
            if "image" not in record or "label" not in record:
                raise DataError(f"{where}: records need 'image' and 'label' features")
            image = np.asarray(record["image"])
            image = image[..., None] if image.ndim == 2 else image
            images.append(image if size is None else _fit(image, size))
            labels.append(int(record["label"]))
    if not images:
        raise DataError(f"{where}: split is empty")
    if len({im.shape for im in images}) > 1:
        raise DataError(f"{where}: images differ in size; set data.image_size to resize them")
    return np.stack(images).astype(np.uint8), np.asarray(labels)


def _read_tfds(
    tfds_name: str, data_dir: pathlib.Path | None, limit: int | None, size: int | None
) -> _Arrays:
    """Reads a prepared ``array_record`` TFDS build from its folder, without TensorFlow."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(
            f"source 'tfds' needs the Python package tensorflow-datasets "
            f"(pip install tensorflow-datasets): {_oneline(err)}"
        ) from err
    root = _tfds_root(data_dir)
    build = _find_tfds_build(root, tfds_name)
    if build is None:
        raise DataError(
            f"TFDS data set '{tfds_name}' is not prepared under data.data_dir='{root}' (no "
            f"{tfds_name}/<version>/dataset_info.json); " + _PREPARE_HINT.format(tfds=tfds_name)
        )
    # builder_from_directory reads features.json, so neither TensorFlow nor the data set's
    # generation code (tfds.data_source would import it) is needed.
    try:
        builder = tfds.builder_from_directory(str(build))
        sources = builder.as_data_source()
        names = tuple(builder.info.features["label"].names)
    except NotImplementedError as err:
        raise DataError(
            f"TFDS build {build} has no random-access file format; re-prepare it with "
            f"file_format='array_record'"
        ) from err
    except Exception as err:  # tfds raises many kinds of errors on broken builds
        raise DataError(f"cannot open TFDS build {build}: {_oneline(err)}") from err
    test_split = "test" if "test" in sources else "validation"
    if "train" not in sources or test_split not in sources:
        raise DataError(f"TFDS build {build} needs 'train' and 'test' (or 'validation') splits")
    x_train, y_train = _decode_split(sources["train"], limit, size, f"{build} train")
    x_test, y_test = _decode_split(sources[test_split], limit, size, f"{build} {test_split}")
    return _Arrays(x_train, y_train, x_test, y_test, names)


# ----------------------------------------------------------------------------- npz, built-ins


def _images(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{what} must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
    if x.dtype != np.uint8:
        in_range = x.size == 0 or (x.min() >= 0 and x.max() <= 255)
        if not (np.issubdtype(x.dtype, np.integer) and in_range):
            raise DataError(f"{what} must be uint8 pixels in 0..255, got dtype {x.dtype}")
        x = x.astype(np.uint8)
    return x


def _read_npz(path: pathlib.Path) -> _Arrays:
    if not path.is_file():
        raise DataError(
            f"data.data_dir={str(path)!r} is not an .npz file (expected keys x_train, "
            f"y_train, x_test, y_test)"
        )
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks keys {missing}; expected {', '.join(keys)}")
            arrays = {k: z[k] for k in keys}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        reason = _oneline(err)
        raise DataError(f"cannot read {path} as .npz (allow_pickle=False): {reason}") from err
    for split in ("train", "test"):
        x = _images(arrays[f"x_{split}"], f"{path}: x_{split}")
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.shape[0] != x.shape[0]:
            raise DataError(f"{path}: y_{split} must be {x.shape[0]} integer labels, got {y.shape}")
        arrays[f"x_{split}"] = x
    return _Arrays(**arrays)


def _read_digits(size: int, seed: int) -> _Arrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    images = _resize(images, size)
    order = np.random.default_rng(seed).permutation(images.shape[0])
    cut = int(0.8 * images.shape[0])
    train, test = order[:cut], order[cut:]
    labels = digits.target
    return _Arrays(images[train], labels[train], images[test], labels[test], _DIGIT_NAMES)


def _make_synthetic(size: int, seed: int) -> _Arrays:
    rng = np.random.default_rng(seed)
    return _Arrays(
        rng.integers(0, 256, (512, size, size, 3), dtype=np.uint8),
        rng.integers(0, 10, 512),
        rng.integers(0, 256, (128, size, size, 3), dtype=np.uint8),
        rng.integers(0, 10, 128),
        _DIGIT_NAMES,
    )


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, _Spec] = {
    "digits": _Spec(10, None, None, _DIGIT_NAMES, ("builtin",), default_size=16),
    "synthetic": _Spec(10, None, None, _DIGIT_NAMES, ("synthetic",), default_size=32),
    "npz": _Spec(None, None, None, None, ("npz",)),
    "mnist": _Spec(
        10, (0.1307,), (0.3081,), _DIGIT_NAMES, ("official", "tfds", "npz"), "mnist",
        _idx_finder("mnist"), _read_idx_set,
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... in DIR or DIR/mnist",
    ),
    "fashion_mnist": _Spec(
        10, (0.2860,), (0.3530,), _FASHION_NAMES, ("official", "tfds", "npz"), "fashion_mnist",
        _idx_finder("fashion_mnist", "fashion-mnist"), _read_idx_set,
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... in DIR or "
        "DIR/fashion_mnist",
    ),
    "cifar10": _Spec(
        10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), _CIFAR10_NAMES,
        ("official", "tfds", "npz"), "cifar10",
        _folder_finder("cifar-10-batches-py", _CIFAR10_FILES), _read_cifar10,
        "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    ),
    "cifar100": _Spec(
        100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), None,
        ("official", "tfds", "npz"), "cifar100",
        _folder_finder("cifar-100-python", _CIFAR100_FILES), _read_cifar100,
        "cifar-100-python/{train, test, meta}",
    ),
    "tiny_imagenet": _Spec(
        200, _IMAGENET_MEAN, _IMAGENET_STD, None, ("official", "npz"), None,
        _folder_finder("tiny-imagenet-200", _TINY_FILES), _read_tiny_imagenet,
        "tiny-imagenet-200/{wnids.txt, train/, val/val_annotations.txt}, or an .npz file as "
        "data.data_dir (Tiny ImageNet has no TFDS build)",
    ),
    "imagenet": _Spec(
        1000, _IMAGENET_MEAN, _IMAGENET_STD, None, ("tfds", "npz"), "imagenet2012",
        default_size=224,
    ),
}  # fmt: skip


def names() -> list[str]:
    """Names :func:`load` accepts, sorted."""
    return sorted(_REGISTRY)


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
        name: one of :func:`names` (``'digits'``, ``'mnist'``, ``'cifar10'``, ``'npz'``, ...).
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
    if name not in _REGISTRY:
        raise DataError(f"data.name={name!r} is unknown; allowed: {', '.join(names())}")
    spec = _REGISTRY[name]
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
        arrays = _read_digits(size, seed)
    elif chosen == "synthetic":
        arrays = _make_synthetic(size, seed)
    elif chosen == "npz":
        arrays = _read_npz(root)
    elif chosen == "official":
        folder = spec.find_official(root)
        if folder is None:
            raise DataError(
                f"no official {name} files in data.data_dir={str(root)!r}; expected {spec.expected}"
            )
        arrays = spec.read_official(folder)
    else:
        fit_size = size if spec.default_size else None
        try:
            arrays = _read_tfds(spec.tfds_name, root, limit, fit_size)
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
