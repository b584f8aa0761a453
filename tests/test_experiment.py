"""End to end: the quickstart config through the CLI, and bad input rejected before any work."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from leakjax import config_files, experiment, report
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cli(*args, timeout=900):
    env = dict(os.environ)
    env.setdefault("LEAKJAX_JAX_CACHE", str(ROOT / ".jax_cache"))
    return subprocess.run(
        [sys.executable, "-m", "leakjax", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quickstart_tiny_end_to_end(tmp_path):
    wd = tmp_path / "qs"
    out = _cli("--config=configs/quickstart.py:tiny", f"--workdir={wd}")
    assert out.returncode == 0, out.stderr[-3000:]
    for name in (
        "config.json",
        "metrics.json",
        "fl_history.json",
        "grid.png",
        "reconstruction.npz",
        "summary.csv",
        "loss.png",
        "fl_accuracy.png",
    ):
        assert (wd / name).is_file(), name
    m = json.loads((wd / "metrics.json").read_text())
    s = m["summary"]
    assert s["attack"] == "ig" and s["mode"] == "fedavg" and len(m["clients"]) == 2
    assert np.isfinite(s["psnr_mean"]) and 0 <= s["success_rate"] <= 1
    assert s["images_attacked"] == sum(c["num_samples"] for c in m["clients"])
    cfg = json.loads((wd / "config.json").read_text())
    assert cfg["seed"] == 0 and "jax" in cfg["_meta"]["versions"]
    hist = json.loads((wd / "fl_history.json").read_text())
    assert hist["round"] == [0, 1, 2] and len(hist["test_acc"]) == 3
    arrays = report.load_npz(wd / "reconstruction.npz")
    assert arrays["recon_0"].shape == arrays["truth_0"].shape
    with Image.open(wd / "grid.png") as im:
        assert im.size[0] > 50 and im.size[1] > 50
    assert "summary:" in out.stdout and "psnr_mean" in out.stdout


@pytest.mark.parametrize(
    "override,needle",
    [
        ("--config.data.name=imagenet9", "data.name"),
        ("--config.model.name=resnet99", "model.name"),
        ("--config.attack.name=nope", "attack.name"),
        ("--config.data.partition=zipf", "data.partition"),
        ("--config.data.beta=0", "data.beta"),
        ("--config.data.beta=-1", "data.beta"),
        ("--config.fl.batch_size=100000", "fl.batch_size"),
        ("--config.fl.lr=-0.1", "fl.lr"),
        ("--config.attack.clients=1000", "attack.clients"),
        ("--config.attack.mode=magic", "attack.mode"),
        ("--config.attack.labels=psychic", "attack.labels"),
        ("--config.attack.vmap_chunk=-3", "attack.vmap_chunk"),
        ("--config.data.max_test=-5", "data.max_test"),
        ("--config.data.max_test=2.5", "data.max_test"),
    ],
)
def test_bad_config_one_line_exit_2_nothing_written(tmp_path, override, needle):
    wd = tmp_path / "wd"
    out = _cli("--config=configs/quickstart.py:tiny", override, f"--workdir={wd}", timeout=300)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0] and "Traceback" not in out.stderr
    assert not wd.exists()


def test_max_test_keeps_the_first_test_images_only():
    c = config_files.load("configs/quickstart.py:tiny")
    full = experiment.prepare(c).dataset
    c.data.max_test = 7
    cut = experiment.prepare(c).dataset
    assert len(full.test_labels) > 7 and len(cut.test_labels) == 7
    np.testing.assert_array_equal(cut.test_images, full.test_images[:7])
    np.testing.assert_array_equal(cut.train_labels, full.train_labels)


def test_missing_data_dir_and_nonempty_workdir(tmp_path):
    wd = tmp_path / "wd"
    out = _cli(
        "--config=configs/quickstart.py:tiny",
        "--config.data.name=cifar10",
        f"--config.data.data_dir={tmp_path / 'nowhere'}",
        f"--workdir={wd}",
        timeout=300,
    )
    assert out.returncode == 2 and "nowhere" in out.stderr and not wd.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("precious")
    out = _cli("--config=configs/quickstart.py:tiny", f"--workdir={busy}", timeout=300)
    assert out.returncode == 2 and "not empty" in out.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]


def test_run_api_refuses_nonempty_workdir(tmp_path):
    sys.path.insert(0, str(ROOT / "configs"))
    try:
        import quickstart
    finally:
        sys.path.pop(0)
    (tmp_path / "x").write_text("1")
    with pytest.raises(ConfigError, match="not empty"):
        experiment.run(quickstart.get_config("tiny"), tmp_path)
