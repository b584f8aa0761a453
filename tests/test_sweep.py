"""The sweep runner: many configs, failures recorded, tables and pictures written."""

import csv
import os
import pathlib
import subprocess
import sys

import pytest

from leakjax import sweep
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]

GOOD = """
from leakjax.config import base_config

def get_config(preset=""):
    c = base_config()
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.partition = "iid"
    c.model.name = "mlp"
    c.fl.num_clients = 40
    c.fl.rounds = 2
    c.fl.local_epochs = 1
    c.fl.batch_size = 5
    c.attack.steps = 10 if preset == "cpu" else 1000
    c.attack.chunk = 10
    c.output.progress = False
    return c
"""

BROKEN = """
def get_config(preset=""):
    raise RuntimeError("this config is broken on purpose")
"""


def test_sweep_runs_configs_and_continues_past_failures(tmp_path, monkeypatch):
    """A config that fails while running is recorded and the sweep goes on."""
    from leakjax import experiment

    cdir = tmp_path / "configs"
    cdir.mkdir()
    (cdir / "a_good.py").write_text(GOOD)
    (cdir / "b_fails.py").write_text(GOOD)
    specs = sweep.expand(f"{cdir}/*.py:cpu")
    assert [pathlib.Path(s.split(":")[0]).name for s in specs] == ["a_good.py", "b_fails.py"]
    real = experiment.run

    def run(cfg, wd, **kw):
        if wd.name.startswith("b_"):
            raise RuntimeError("this run fails on purpose")
        return real(cfg, wd, **kw)

    monkeypatch.setattr(experiment, "run", run)
    rows = sweep.run_sweep(specs, tmp_path / "out", progress=False)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "fails on purpose" in rows[1]["error"]
    assert rows[0]["attack"] == "ig" and rows[0]["psnr_mean"] is not None
    out = tmp_path / "out"
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and table[0]["experiment"] == "a_good-cpu"
    assert "| a_good-cpu |" in (out / "results.md").read_text()
    assert (out / "contact_sheet.png").is_file() and (out / "fl_accuracy.png").is_file()
    assert (out / "b_fails-cpu.error.txt").is_file()


BAD_BATCH = GOOD.replace("c.fl.batch_size = 5", "c.fl.batch_size = 500")
NO_CPU_PRESET = GOOD.replace(
    "    return c\n",
    '    if preset:\n        raise ValueError(f"unknown preset {preset!r}")\n    return c\n',
)


@pytest.mark.parametrize(
    "name, text, want",
    [
        (
            "g_broken.py",
            BROKEN,
            "get_config('cpu') raised RuntimeError: this config is broken on purpose",
        ),
        ("g_preset.py", NO_CPU_PRESET, "get_config('cpu') raised ValueError: unknown preset 'cpu'"),
        ("g_batch.py", BAD_BATCH, "g_batch.py:cpu: fl.batch_size=500 is larger than"),
        ("g_dict.py", "def get_config(preset=''):\n    return {'seed': 0}\n", "returned a dict"),
    ],
    ids=["get_config_raises", "bad_preset", "impossible_setting", "plain_dict"],
)
def test_sweep_checks_every_config_before_running_any(tmp_path, monkeypatch, name, text, want):
    """Issue 33 (sweep validates late): a bad preset, a config that raises or an impossible
    setting in the 7th config is a ConfigError naming that config and the key before the
    first experiment runs; nothing is written."""
    from leakjax import experiment

    cdir = tmp_path / "configs"
    cdir.mkdir()
    for i in range(6):
        (cdir / f"a{i}.py").write_text(GOOD)
    (cdir / name).write_text(text)
    monkeypatch.setattr(experiment, "run", lambda *a, **k: pytest.fail("ran before checking"))
    specs = sweep.expand(f"{cdir}/*.py:cpu")
    assert len(specs) == 7 and specs[-1].endswith(name + ":cpu")
    with pytest.raises(ConfigError) as e:
        sweep.run_sweep(specs, tmp_path / "out", progress=False)
    assert want in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_expand_refuses_globs_that_match_nothing_and_missing_files(tmp_path):
    """Issue 33 item 12: no literal path from an empty glob; a missing file is named."""
    with pytest.raises(ConfigError, match="matches no config file"):
        sweep.expand(f"{tmp_path}/nothing*/*.py:cpu")
    (tmp_path / "_common.py").write_text("X = 1\n")
    with pytest.raises(ConfigError, match="only helper modules"):
        sweep.expand(f"{tmp_path}/*.py")
    with pytest.raises(ConfigError, match="config file not found"):
        sweep.expand(f"{tmp_path}/missing.py:cpu")


def _sweep_cli(*args, **extra_env):
    """The console script's way in (`leakjax-sweep` = leakjax.sweep:entry), not ``-m``."""
    code = "import sys; sys.argv[0] = 'leakjax-sweep'; from leakjax.sweep import entry; entry()"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_sweep_cli_help_and_bad_input_exit_2(tmp_path):
    """Issue 33 item 12: --help lists the sweep's flags; an empty glob, a missing config and
    a bad preset exit 2 with one line and nothing written."""
    out = _sweep_cli("--help")
    assert out.returncode == 0
    for flag in ("--configs", "--workdir", "--resume", "--jax_cache_dir", "Exit codes"):
        assert flag in out.stdout
    wd = tmp_path / "out"
    for configs, want in [
        (f"{tmp_path}/none*.py:tiny", "matches no config file"),
        (f"{tmp_path}/missing.py", "config file not found"),
        ("configs/quickstart.py:nosuch", "unknown preset 'nosuch'"),
    ]:
        out = _sweep_cli(f"--configs={configs}", f"--workdir={wd}")
        assert out.returncode == 2, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("leakjax-sweep: error: --configs:"), lines
        assert want in lines[0]
        assert not wd.exists()


FL_ONLY = """
from leakjax.config import base_config

def get_config(preset=""):
    c = base_config()
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.partition = "iid"
    c.model.name = preset or "mlp"
    c.fl.num_clients = 8
    c.fl.rounds = 2
    c.fl.local_epochs = 1
    c.fl.batch_size = 10
    c.attack.name = "none"
    c.output.progress = False
    return c
"""

DMGAN = """
from leakjax.config import base_config

def get_config(preset=""):
    c = base_config()
    c.attack.name = "dmgan"
    c.model.name = "dmgan_discriminator"
    c.data.name = "digits"
    c.fl.num_clients = 4
    c.fl.batch_size = 7
    c.fl.local_epochs = 3
    return c
"""


def test_expand_skips_helper_modules(tmp_path):
    (tmp_path / "_common.py").write_text("X = 1\n")
    (tmp_path / "fig01.py").write_text(GOOD)
    assert sweep.expand(f"{tmp_path}/*.py:cpu") == [f"{tmp_path}/fig01.py:cpu"]
    assert sweep.expand(f"{tmp_path}/_common.py") == [f"{tmp_path}/_common.py"]  # named: kept


def test_fedavg_without_attack_and_its_accuracy_plot(tmp_path, monkeypatch):
    """attack.name='none' trains FedAvg only (metrics.json with final_test_acc, no attack);
    fl_accuracy.png then draws those runs only, one line per model (the paper's Fig. 48)."""
    import json

    from leakjax import figures

    cfg = tmp_path / "fl.py"
    cfg.write_text(FL_ONLY)
    (tmp_path / "atk.py").write_text(GOOD)
    drawn = {}
    real = figures.plot_curves

    def spy(path, curves, *args, **kwargs):
        if pathlib.Path(path).parent == tmp_path / "out":
            drawn.update(curves)
        return real(path, curves, *args, **kwargs)

    monkeypatch.setattr(figures, "plot_curves", spy)
    specs = [f"{cfg}:mlp", f"{cfg}:fc2", f"{tmp_path}/atk.py:cpu"]
    rows = sweep.run_sweep(specs, tmp_path / "out", progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert rows[0]["attack"] == "none" and rows[0]["images_attacked"] == 0
    assert 0.0 <= rows[0]["final_test_acc"] <= 1.0
    m = json.loads((tmp_path / "out" / "fl-mlp" / "metrics.json").read_text())
    assert m["clients"] == [] and m["summary"]["final_test_acc"] == rows[0]["final_test_acc"]
    assert (tmp_path / "out" / "fl-mlp" / "fl_history.json").is_file()
    assert not (tmp_path / "out" / "fl-mlp" / "grid.png").exists()
    assert sorted(drawn) == ["fc2", "mlp"]  # the attacked run's curve is left out


def test_client_attack_configs_run_through_experiment_run(tmp_path, monkeypatch):
    """A DMGAN config is an ordinary config: experiment.run prepares it (the client's data
    checks included) and hands it to client_attack.run; its per-round tracked_fraction
    shows as the last round's value."""
    from leakjax import client_attack

    seen = {}

    def fake_run(p, workdir, *, progress, resume=False):
        seen["name"], seen["progress"] = p.config.attack.name, progress
        seen["model"] = client_attack.build(p).model.num_classes
        pathlib.Path(workdir).mkdir(parents=True)
        return {
            "attack": "dmgan",
            "mode": "client",
            "dataset": p.config.data.name,
            "model": p.config.model.name,
            "num_clients": 4,
            "batch_size": 7,
            "local_epochs": 3,
            "tracked_fraction": [0.0, 0.5, 0.75],
            "final_local_test_acc": 0.5,
            "wall_seconds": 1.5,
            "device": "cpu",
        }

    monkeypatch.setattr(client_attack, "run", fake_run)
    (tmp_path / "dm.py").write_text(DMGAN)
    rows = sweep.run_sweep([f"{tmp_path}/dm.py"], tmp_path / "out", progress=False)
    (r,) = rows
    assert r["status"] == "ok", r
    assert seen == {"name": "dmgan", "progress": False, "model": 11}
    assert r["attack"] == "dmgan" and r["mode"] == "client" and r["dataset"] == "digits"
    assert r["tracked_fraction"] == 0.75 and r["final_local_test_acc"] == 0.5
    assert r["batch_size"] == 7 and r["local_epochs"] == 3 and r["num_clients"] == 4
    assert "| 0.75 |" in (tmp_path / "out" / "results.md").read_text()


def test_sweep_resume_keeps_finished_experiments_and_reruns_the_rest(tmp_path, monkeypatch):
    from leakjax import experiment
    from leakjax.types import ConfigError

    cdir = tmp_path / "configs"
    cdir.mkdir()
    (cdir / "a_good.py").write_text(GOOD)
    (cdir / "c_good.py").write_text(GOOD)
    specs = sweep.expand(f"{cdir}/*.py:cpu")
    out = tmp_path / "out"
    first = sweep.run_sweep(specs, out, progress=False)
    assert [r["status"] for r in first] == ["ok", "ok"]
    (out / "c_good-cpu" / "metrics.json").unlink()  # as if interrupted before the end
    try:
        sweep.run_sweep(specs, out, progress=False)
        raise AssertionError("a non-empty sweep workdir must be refused without resume")
    except ConfigError as e:
        assert "--resume" in str(e)
    calls = []
    real = experiment.run
    monkeypatch.setattr(
        experiment, "run", lambda cfg, wd, **kw: calls.append((wd.name, kw)) or real(cfg, wd, **kw)
    )
    again = sweep.run_sweep(specs, out, progress=False, resume=True)
    assert [c[0] for c in calls] == ["c_good-cpu"] and calls[0][1]["resume"] is True
    assert [r["status"] for r in again] == ["ok", "ok"]
    assert again[0]["psnr_mean"] == first[0]["psnr_mean"]


def test_contact_sheet_has_a_one_line_title_and_names_each_grid(tmp_path, monkeypatch):
    """Issue 33 item 15: the title was the experiments' names joined, wrapped at 10 pt on a
    ~436 dpi canvas (a third of the image); now one normal line, each grid captioned."""
    import numpy as np
    from PIL import Image

    from leakjax import figures

    names = [f"fig{i:02d}_inverting_gradients-cpu" for i in range(5)]
    rng = np.random.default_rng(0)
    for n in names:  # grid.png files of a real run's size
        (tmp_path / n).mkdir()
        pixels = rng.integers(0, 255, (692, 1148, 3), np.uint8)
        Image.fromarray(pixels).save(tmp_path / n / "grid.png")
    figs, real = [], figures.save_image_grid
    monkeypatch.setattr(
        figures, "save_image_grid", lambda *a, **k: figs.append(real(*a, **k)) or figs[-1]
    )
    sweep.contact_sheet(tmp_path, names)
    (fig,) = figs
    title = fig._suptitle
    fig_px = fig.get_figheight() * fig.dpi
    assert "\n" not in title.get_text()
    assert title.get_window_extent(fig.canvas.get_renderer()).height < 0.05 * fig_px
    assert fig.axes[0].get_position().height > 0.9  # the pictures fill the figure
    assert [t.get_text() for t in fig.axes[0].texts] == names
    with Image.open(tmp_path / "contact_sheet.png") as im:
        assert im.size[0] > 1000  # 3 columns of 480-pixel grids, not shrunk


SEEDED = """

_base = get_config


def get_config(preset=""):
    c = _base("cpu")
    c.attack.lr = 0.1 / int(preset)  # traced: an argument of the compiled programs
    return c
"""


def test_sweep_reuses_compiled_programs_across_experiments_and_processes(tmp_path):
    """``--jax_cache_dir``: a sweep fills the cache; a second sweep process, of the same
    config with another attack learning rate (traced: the same programs), compiles nothing
    new. Every program is cached (JAX's minimum compile time 0, which `leakjax.compile_cache`
    leaves alone): with a minimum, whether a program is cached depends on the machine's load."""
    every = dict(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cfg = tmp_path / "good.py"
    cfg.write_text(GOOD + SEEDED)
    cache = tmp_path / "cache"
    first = _sweep_cli(
        f"--configs={cfg}:1", f"--workdir={tmp_path / 'one'}", f"--jax_cache_dir={cache}", **every
    )
    assert first.returncode == 0, first.stderr[-3000:]
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "nothing was cached"
    second = _sweep_cli(
        f"--configs={cfg}:2", f"--workdir={tmp_path / 'two'}", f"--jax_cache_dir={cache}", **every
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in cache.iterdir()) == entries  # every program read back
