"""TensorFlow Datasets builds prepared on disk, read without TensorFlow."""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any

import numpy as np

from leakjax.data.base import _Arrays, _fit, _oneline
from leakjax.types import DataError

PREPARE_HINT = (
    "prepare it where downloads work: pip install 'leakjax[tfds-prepare]', then "
    "`tfds build {tfds} --data_dir=DIR --file_format=array_record` "
    "(or tfds.builder('{tfds}').download_and_prepare(file_format='array_record')) "
    "and copy DIR here"
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


def read_tfds(
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
            f"{tfds_name}/<version>/dataset_info.json); " + PREPARE_HINT.format(tfds=tfds_name)
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
