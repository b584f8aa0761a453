"""The official ``tiny-imagenet-200`` folder of JPEGs (labelled ``val`` as the test split)."""

from __future__ import annotations

import pathlib

import numpy as np

from leakjax.data.base import _Arrays, _fit, _oneline
from leakjax.types import DataError

TINY_FILES = ("wnids.txt", "train", "val/val_annotations.txt")


def _read_image_file(path: pathlib.Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return _fit(np.asarray(img.convert("RGB")), size)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot decode image {path}: {_oneline(err)}") from err


def read_tiny_imagenet(folder: pathlib.Path) -> _Arrays:
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
