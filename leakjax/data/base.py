"""Types and helpers shared by the readers: Dataset, DatasetInfo, resizing, pixel checks."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from leakjax.types import DataError

PathLike = str | os.PathLike


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


def _oneline(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


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


_CHANNELS = (1, 3)  # gray, RGB: what a channel-first axis 1 may hold
_LAST_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA: what a channel-last axis -1 may hold


def channels_last(x: np.ndarray, where: str) -> np.ndarray:
    """Returns 4-D images as ``[N, H, W, C]``, transposing a channel-first ``[N, C, H, W]``.

    ``[N, C, H, W]`` with C in (1, 3) and a last axis that cannot be channels (not 1, 3
    or 4) is transposed, with a one-line warning. A last axis of 1, 3 or 4 with an axis 1
    that is not 1 or 3 is already channel-last. Anything else (both axes could be
    channels, or neither can) raises.

    Args:
        x: a 4-D array.
        where: names the setting and file for messages, e.g. ``data.data_dir='a.npz': x_train``.

    Raises:
        DataError (a ``ConfigError``): the layout is ambiguous or has no channel axis.
    """
    first, last = x.shape[1] in _CHANNELS, x.shape[-1] in _LAST_CHANNELS
    if last and not first:
        return x
    if first and not last:
        out = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        warnings.warn(
            f"{where}: images of shape {x.shape} look channel-first [N, C, H, W]; "
            f"transposed to channel-last {out.shape}",
            UserWarning,
            stacklevel=2,
        )
        return out
    if first and last:
        raise DataError(
            f"{where}: images of shape {x.shape} are ambiguous: axis 1 and the last axis could "
            f"both be channels; store them as [N, H, W, C] with H, W not in (1, 3)"
        )
    raise DataError(
        f"{where}: images of shape {x.shape} have no channel axis: expected [N, H, W, C] with "
        f"C in (1, 3, 4) or [N, C, H, W] with C in (1, 3)"
    )


def _images(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim not in (3, 4):
        raise DataError(f"{what} must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"{what} must be uint8 pixels in 0..255, got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"{what} must be pixels in 0..255, got {x.dtype} values in {x.min()}..{x.max()}"
            )
        x = x.astype(np.uint8)
    return x[..., None] if x.ndim == 3 else channels_last(x, what)


def folder_finder(folder: str, required: Sequence[str]):
    def find(root: pathlib.Path) -> pathlib.Path | None:
        for candidate in (root / folder, root):
            if all((candidate / f).exists() for f in required):
                return candidate
        return None

    return find
