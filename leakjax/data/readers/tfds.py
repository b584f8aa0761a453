"""TensorFlow Datasets builds prepared on disk, read without TensorFlow.

Any TFDS image-classification build works: ``leakjax`` opens the prepared folder
(``DIR/name/[config/]X.Y.Z``) with ``tfds.builder_from_directory`` (it reads
``dataset_info.json`` and ``features.json``, so neither TensorFlow nor the data set's
generation code is imported), finds the image and label features from
``info.supervised_keys`` (else the one ``Image`` and the one ``ClassLabel`` feature), and
reads the records:

- ``array_record`` (and ``parquet``): ``builder.as_data_source()``, random access, so a
  ``limit`` decodes only the first records;
- ``tfrecord`` (the default of ``tfds build``): ``as_data_source()`` refuses it
  (``NotImplementedError`` in tensorflow-datasets 4.9.10), so the shards are read with
  :mod:`leakjax.data.readers.tfrecord` and each record is decoded with
  ``features.deserialize_example_np`` (protobuf + PIL, no TensorFlow).
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from leakjax.data.base import _Arrays, _fit, _oneline, channels_last
from leakjax.data.readers.tfrecord import read_records
from leakjax.types import DataError

PREPARE_HINT = (
    "prepare it where downloads work: pip install 'leakjax[tfds-prepare]', then "
    "`tfds build {tfds} --data_dir=DIR` (tfrecord, the default, or "
    "--file_format=array_record for random access) and copy DIR here"
)


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


_CHUNK = 1024


def _features(builder: Any, build: pathlib.Path) -> tuple[str, str, bool, tuple[str, ...]]:
    """(image key, label key, image is a plain Tensor, class names) from the build's info."""
    import tensorflow_datasets as tfds

    info, feats = builder.info, builder.info.features
    keys = info.supervised_keys
    if (
        isinstance(keys, tuple | list)
        and len(keys) == 2
        and all(isinstance(k, str) and k in feats for k in keys)
    ):
        image_key, label_key = keys
    else:
        images = [k for k, f in feats.items() if isinstance(f, tfds.features.Image)]
        labels = [k for k, f in feats.items() if isinstance(f, tfds.features.ClassLabel)]
        if len(images) != 1 or len(labels) != 1:
            raise DataError(
                f"TFDS build {build}: cannot tell its image and label features "
                f"(supervised_keys={keys!r}, features {sorted(feats)}); leakjax needs one "
                f"Image and one ClassLabel feature"
            )
        image_key, label_key = images[0], labels[0]
    image, label = feats[image_key], feats[label_key]
    tensor = not isinstance(image, tfds.features.Image)
    if tensor and not isinstance(image, tfds.features.Tensor):
        raise DataError(
            f"TFDS build {build}: feature {image_key!r} is a {type(image).__name__}, not an image"
        )
    if not isinstance(label, tfds.features.ClassLabel):
        raise DataError(
            f"TFDS build {build}: label feature {label_key!r} is a {type(label).__name__}, "
            f"not a ClassLabel"
        )
    names = tuple(label.names) or tuple(str(i) for i in range(label.num_classes))
    return image_key, label_key, tensor, names


def _random_access(source: Any, limit: int | None) -> Iterator[dict]:
    count = len(source) if limit is None else min(limit, len(source))
    for start in range(0, count, _CHUNK):
        yield from source.__getitems__(list(range(start, min(count, start + _CHUNK))))


def _sequential(paths: Iterable[Any], features: Any, limit: int | None) -> Iterator[dict]:
    left = limit
    for path in paths:
        for record in read_records(os.fspath(path), left):
            yield features.deserialize_example_np(record)
            if left is not None:
                left -= 1
        if left == 0:
            return


def _decode_split(
    examples: Iterable[dict], keys: tuple[str, str], size: int | None, where: str
) -> tuple[np.ndarray, np.ndarray]:
    image_key, label_key = keys
    images, labels = [], []
    for record in examples:
        image = np.asarray(record[image_key])
        image = image[..., None] if image.ndim == 2 else image
        images.append(image if size is None or image.ndim != 3 else _fit(image, size))
        labels.append(int(record[label_key]))
    if not images:
        raise DataError(f"{where}: split is empty")
    if len({im.shape for im in images}) > 1:
        raise DataError(f"{where}: images differ in size; set data.image_size to resize them")
    return np.stack(images).astype(np.uint8), np.asarray(labels)


def read_tfds(
    tfds_name: str, data_dir: pathlib.Path | None, limit: int | None, size: int | None
) -> _Arrays:
    """Reads a prepared TFDS build (array_record, parquet or tfrecord) without TensorFlow.

    Args:
        tfds_name: ``name`` or ``name/config`` as TFDS spells it.
        data_dir: the TFDS data dir (``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        limit: decode at most this many records of each split (the first ones).
        size: resize each image so its shorter side is ``size``, then center crop.

    Raises:
        DataError: missing package or build, unreadable files, no image/label features.
    """
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
            f"{tfds_name}/<version>/dataset_info.json); " + PREPARE_HINT.format(tfds=tfds_name)
        )
    try:
        builder = tfds.builder_from_directory(str(build))
        file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format))
        split_names = set(builder.info.splits.keys())
    except Exception as err:  # tfds raises many kinds of errors on broken builds
        raise DataError(f"cannot open TFDS build {build}: {_oneline(err)}") from err
    image_key, label_key, tensor, names = _features(builder, build)
    test_split = "test" if "test" in split_names else "validation"
    if "train" not in split_names or test_split not in split_names:
        raise DataError(
            f"TFDS build {build} needs 'train' and 'test' (or 'validation') splits, "
            f"has {sorted(split_names)}"
        )
    if file_format == "tfrecord":
        features = builder.info.features
        splits = {
            s: _sequential(builder.info.splits[s].filepaths, features, limit)
            for s in ("train", test_split)
        }
    else:
        try:
            sources = builder.as_data_source()
        except NotImplementedError as err:
            raise DataError(
                f"TFDS build {build} is in file format {file_format!r}, which needs TensorFlow "
                f"to read: convert it to array_record or tfrecord where TensorFlow is installed "
                f"(pip install 'leakjax[tfds-prepare]'; tfds build {tfds_name} "
                f"--file_format=array_record)"
            ) from err
        except Exception as err:
            raise DataError(f"cannot open TFDS build {build}: {_oneline(err)}") from err
        splits = {s: _random_access(sources[s], limit) for s in ("train", test_split)}
    out = []
    for split in ("train", test_split):
        where = f"data.data_dir={str(root)!r}: TFDS build {build} {split}"
        try:
            keys = (image_key, label_key)
            x, y = _decode_split(splits[split], keys, None if tensor else size, where)
        except DataError:
            raise
        except Exception as err:  # protobuf / PIL / array_record errors on corrupt records
            raise DataError(f"{where}: cannot decode records: {_oneline(err)}") from err
        if tensor and x.ndim == 4:
            x = channels_last(x, where)
            x = x if size is None else np.stack([_fit(im, size) for im in x])
        out += [x, y]
    return _Arrays(*out, names)
