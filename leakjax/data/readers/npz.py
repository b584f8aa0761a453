"""An ``.npz`` file with ``x_train, y_train, x_test, y_test`` (no pickles)."""

from __future__ import annotations

import pathlib
import zipfile
import zlib

import numpy as np

from leakjax.data.base import _Arrays, _images, _oneline
from leakjax.types import DataError


def read_npz(path: pathlib.Path) -> _Arrays:
    where = f"data.data_dir={str(path)!r}"
    if not path.is_file():
        raise DataError(
            f"{where} is not an .npz file (expected keys x_train, y_train, x_test, y_test)"
        )
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not zipfile.is_zipfile(path):  # np.load would call any non-zip, non-.npy file a pickle
        with open(path, "rb") as f:
            head = f.read(16)
        raise DataError(f"{where}: {path} is not an .npz (zip) archive; it starts with {head!r}")
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
        x = _images(arrays[f"x_{split}"], f"{where}: x_{split}")
        y = arrays[f"y_{split}"]
        if x.shape[0] == 0:
            raise DataError(f"{where}: x_{split} has no images (the {split} split is empty)")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: y_{split} must be integer class labels, got dtype {y.dtype}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"{where}: y_{split} must be {x.shape[0]} labels (one per x_{split} image), "
                f"got shape {y.shape}"
            )
        arrays[f"x_{split}"] = x
    return _Arrays(**arrays)
