"""Channel-first images in .npz files: transposed with a warning, or refused in one line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from leakjax import data
from leakjax.types import ConfigError


def _save(path, x_train, x_test=None):
    rng = np.random.default_rng(0)
    x_test = x_train[:3] if x_test is None else x_test
    np.savez(path, x_train=x_train, y_train=rng.integers(0, 4, len(x_train)),
             x_test=x_test, y_test=rng.integers(0, 4, len(x_test)))  # fmt: skip
    return path


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_first_npz_is_transposed_with_a_warning(tmp_path, channels):
    x = np.random.default_rng(1).integers(0, 256, (10, channels, 16, 12), dtype=np.uint8)
    path = _save(tmp_path / "chw.npz", x)
    with pytest.warns(UserWarning) as caught:
        ds = data.load("npz", path)
    assert ds.info.image_shape == (16, 12, channels)
    np.testing.assert_array_equal(ds.train_images, x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(ds.test_images, x[:3].transpose(0, 2, 3, 1))
    assert len(ds.info.mean) == channels
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2  # x_train and x_test
    for text in messages:
        assert "\n" not in text and "data.data_dir" in text and str(path) in text
        assert str((10, channels, 16, 12)) in text or str((3, channels, 16, 12)) in text
        assert f", 16, 12, {channels})" in text


def test_channel_last_npz_loads_without_warning(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    path = _save(tmp_path / "hwc.npz", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load("npz", path)
    np.testing.assert_array_equal(ds.train_images, x)


@pytest.mark.parametrize(
    "shape, needle",
    [
        ((5, 16, 16, 16), "no channel axis"),  # neither axis can hold channels
        ((5, 3, 16, 4), "ambiguous"),  # CHW with W = 4, or HWC RGBA with H = 3
        ((5, 3, 8, 3), "ambiguous"),
    ],
)
def test_unreadable_layouts_raise_config_error(tmp_path, shape, needle):
    path = _save(tmp_path / "bad.npz", np.zeros(shape, np.uint8))
    with pytest.raises(ConfigError) as err:
        data.load("npz", path)
    message = str(err.value)
    assert "\n" not in message
    for part in ("data.data_dir", str(path), str(shape), needle):
        assert part in message, (part, message)


def test_channel_first_named_data_set_from_npz(tmp_path):
    # cifar10 from an .npz written as torchvision tensors would be: [N, 3, 32, 32].
    x = np.random.default_rng(3).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    path = _save(tmp_path / "cifar.npz", x)
    with pytest.warns(UserWarning, match="channel-first"):
        ds = data.load("cifar10", path)
    assert ds.info.image_shape == (32, 32, 3) and ds.info.source == "npz"
