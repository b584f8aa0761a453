"""An ``.npz`` file with ``x_train, y_train, x_test, y_test`` (no pickles)."""

from __future__ import annotations

import pathlib
import zipfile
import zlib

import numpy as np

from leakjax.data.base import _Arrays, _images, _oneline
from leakjax.types import DataError


def read_npz(path: pathlib.Path) -> _Arrays:
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
        x = _images(arrays[f"x_{split}"], f"data.data_dir={str(path)!r}: x_{split}")
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.shape[0] != x.shape[0]:
            raise DataError(f"{path}: y_{split} must be {x.shape[0]} integer labels, got {y.shape}")
        arrays[f"x_{split}"] = x
    return _Arrays(**arrays)
