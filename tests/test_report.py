"""Properties of leakjax.report: safe work directories, atomic writers, valid figures."""

from __future__ import annotations

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from leakjax import figures, report
from leakjax.types import ConfigError


def _tmp_leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def _png_size(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


# --------------------------------------------------------------------------- workdir


def test_prepare_workdir_creates_and_refuses_non_empty(tmp_path):
    fresh = report.prepare_workdir(tmp_path / "a" / "run1")
    assert fresh.is_dir() and not any(fresh.iterdir())
    assert report.prepare_workdir(fresh) == fresh  # empty existing dir is fine
    (fresh / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="not empty; choose a new --workdir"):
        report.prepare_workdir(fresh)
    assert [p.name for p in fresh.iterdir()] == ["metrics.json"]
    assert (fresh / "metrics.json").read_text() == "{}"
    with pytest.raises(ConfigError, match="not a directory"):
        report.prepare_workdir(fresh / "metrics.json")


# --------------------------------------------------------------------------- JSON


def test_write_json_converts_and_replaces_atomically(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"old": "' + "x" * 1000 + '"}')
    obj = {
        "a": np.float32(1.5),
        "b": np.arange(3),
        "c": jnp.ones((2,)),
        "d": (np.int64(4), np.bool_(True)),
        "e": tmp_path,
        "f": None,
    }
    report.write_json(path, obj)
    assert json.loads(path.read_text()) == {
        "a": 1.5,
        "b": [0, 1, 2],
        "c": [1.0, 1.0],
        "d": [4, True],
        "e": str(tmp_path),
        "f": None,
    }
    assert _tmp_leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [float("nan"), np.float32("inf"), np.array([1.0, np.nan])])
def test_write_json_refuses_nan_and_keeps_old_file(tmp_path, bad):
    path = tmp_path / "m.json"
    report.write_json(path, {"ok": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"\$\.x\.y"):
        report.write_json(path, {"x": {"y": bad}})
    assert path.read_bytes() == before
    assert _tmp_leftovers(tmp_path) == []


def test_write_json_rejects_unknown_types(tmp_path):
    with pytest.raises(TypeError, match=r"\$\.k"):
        report.write_json(tmp_path / "m.json", {"k": object()})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- npz


def test_save_npz_roundtrip_and_refuses_objects(tmp_path):
    path = tmp_path / "recon.npz"
    arrays = {"recon": np.random.default_rng(0).random((2, 4, 4, 1)), "labels": np.arange(2)}
    report.save_npz(path, **arrays, jx=jnp.zeros((3,), jnp.bfloat16))
    loaded = report.load_npz(path)
    assert set(loaded) == {"recon", "labels", "jx"}
    np.testing.assert_array_equal(loaded["recon"], arrays["recon"])
    np.testing.assert_array_equal(loaded["labels"], arrays["labels"])
    assert loaded["jx"].dtype == np.float32
    before = path.read_bytes()
    with pytest.raises(ValueError, match="object"):
        report.save_npz(path, bad=np.array([{"a": 1}], dtype=object))
    assert path.read_bytes() == before
    assert _tmp_leftovers(tmp_path) == []
    with pytest.raises(ConfigError, match="does not exist"):
        report.load_npz(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- figures


def test_save_grid_gray_8x8(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.random((4, 8, 8, 1), dtype=np.float32)
    recon = rng.random((4, 8, 8, 1), dtype=np.float32)
    path = tmp_path / "grid.png"
    figures.save_grid(
        path,
        truth,
        recon,
        labels_true=[0, 1, 2, 3],
        labels_pred=[0, 1, 5, 3],
        psnr=[30.0, 20.0, 10.0, 100.0],
        title="DLG, MNIST",
    )
    w, h = _png_size(path)
    assert 200 < w < 2000 and 200 < h < 2000
    assert _tmp_leftovers(tmp_path) == []


@pytest.mark.parametrize("m", [3, 12, 20])
def test_save_grid_rgb_32x32_m_ne_n(tmp_path, m):
    rng = np.random.default_rng(1)
    truth = rng.random((10, 32, 32, 3), dtype=np.float32)
    recon = rng.random((m, 32, 32, 3), dtype=np.float32)
    recon[0, 0, 0, 0] = np.nan  # drawn, not crashed on
    path = tmp_path / f"grid{m}.png"
    figures.save_grid(path, truth, recon, psnr=np.full(min(m, 10), 15.0), max_images=16)
    w, h = _png_size(path)
    assert w > 500  # 8 columns
    assert h > 200
    if m > 8:  # > 8 columns wrap into a second truth/recon row pair
        w3, h3 = w, h
        figures.save_grid(tmp_path / "small.png", truth[:3], recon[:3])
        assert _png_size(tmp_path / "small.png")[1] < h3 < 3 * w3


def test_save_grid_validates(tmp_path):
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ConfigError, match="labels_true"):
        figures.save_grid(tmp_path / "g.png", x, x, labels_true=[0])
    with pytest.raises(ConfigError, match="recon"):
        figures.save_grid(tmp_path / "g.png", x, np.zeros((2, 8, 8, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_save_image_grid(tmp_path):
    images = np.random.default_rng(2).random((10, 16, 16), dtype=np.float32)
    figures.save_image_grid(tmp_path / "imgs.png", images, title="dummy init")
    w, h = _png_size(tmp_path / "imgs.png")
    assert w > 200 and h > 200


def test_plot_curves(tmp_path):
    curves = {
        "cnn": ([0, 1, 2], [0.1, 0.5, 0.7]),
        "resnet": (np.arange(3), np.array([0.2, 0.4, np.nan])),
    }
    figures.plot_curves(tmp_path / "acc.png", curves, "round", "test accuracy", title="FedAvg")
    figures.plot_curves(
        tmp_path / "loss.png", {"dlg": ([1, 2], [1.0, 0.1])}, "step", "loss", logy=True
    )
    assert _png_size(tmp_path / "acc.png") == (600, 400)
    with pytest.raises(ConfigError, match="xs"):
        figures.plot_curves(tmp_path / "x.png", {"a": ([1, 2], [1.0])}, "x", "y")


def test_write_csv_and_markdown(tmp_path):
    rows = [
        {"attack": "dlg", "psnr_mean": np.float64(21.123456), "success_rate": 0.5},
        {"attack": "ig|multi", "psnr_mean": 30.0, "extra": [1, 2]},
    ]
    report.write_csv(tmp_path / "s.csv", rows)
    with open(tmp_path / "s.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == ["attack", "psnr_mean", "success_rate", "extra"]
    assert read[0]["psnr_mean"] == "21.123456" and read[1]["success_rate"] == ""
    assert read[1]["extra"] == "[1, 2]"
    report.write_markdown_table(tmp_path / "s.md", rows, columns=["attack", "psnr_mean"])
    lines = (tmp_path / "s.md").read_text().splitlines()
    assert lines[0] == "| attack | psnr_mean |"
    assert lines[2] == "| dlg | 21.12 |" and lines[3] == "| ig\\|multi | 30 |"
    assert _tmp_leftovers(tmp_path) == []
