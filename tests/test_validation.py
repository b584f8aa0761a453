"""Every setting is checked before anything is written: one line naming the full key, exit 2
(the CLI), no workdir left behind; attacks run with their own documented defaults."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from leakjax import attacks, experiment
from leakjax.attacks.registry import RUN_KEYS
from leakjax.config import base_config
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "--config=configs/quickstart.py:tiny"


def _config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("qs", ROOT / "configs" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny")


def _cli(*args, cwd=ROOT, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("LEAKJAX_JAX_CACHE", str(ROOT / ".jax_cache"))
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "leakjax", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out, time.perf_counter() - t0


def _error_line(out) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("leakjax: error:")]
    assert len(lines) == 1, out.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("name", attacks.names())
def test_attack_name_alone_gives_the_attack_defaults(name):
    """Only run-loop keys in config.attack: every setting is the attack's documented one
    (base_config no longer carries IG's lr/tv into other attacks)."""
    c = base_config()
    c.attack.name = name
    assert set(c.attack.keys()) <= set(RUN_KEYS)
    spec = attacks.get(name)
    got = spec.bind(c.attack)
    assert got.__dict__ | {"labels": None} == spec.settings().__dict__ | {"labels": None}


def test_documented_defaults():
    c = base_config()
    for name, key, want in [
        ("dlg", "lr", 1.0),
        ("grnn", "lr", 1e-4),
        ("cpa", "lr", 1e-3),
        ("cpa", "tv", 3.1),
        ("ig", "lr", 0.1),
        ("dlf", "reorder", 6.075),
    ]:
        c.attack.name = name
        assert getattr(attacks.get(name).bind(c.attack), key) == want, (name, key)


@pytest.mark.parametrize(
    "group,key,value,match",
    [
        ("fl", "lr", float("nan"), "fl.lr must be a finite number"),
        ("fl", "lr_decay", float("inf"), "fl.lr_decay must be a finite number"),
        ("attack", "lr", float("inf"), "attack.lr must be a finite number"),
        ("attack", "tv", float("nan"), "attack.tv must be a finite number"),
        ("fl", "momentum", float("nan"), "fl.momentum"),
        ("data", "beta", float("inf"), "data.beta"),
        ("output", "grid_images", 0, "output.grid_images must be > 0"),
        ("output", "grid_images", -3, "output.grid_images must be > 0"),
        ("fl", "eval_batch", 0, "fl.eval_batch must be > 0"),
        ("attack", "num_devices", 64, "attack.num_devices=64 but only"),
        ("fl", "num_devices", 64, "fl.num_devices=64 but only"),
        ("model", "conv_impl", "fast", "model.conv_impl='fast' is not one of"),
        ("attack", "temprature", 1.0, "attack.temprature is not a setting of ig"),
    ],
)
def test_bad_value_fails_before_anything_is_written(tmp_path, group, key, value, match):
    c = _config()
    c[group][key] = value
    wd = tmp_path / "wd"
    with pytest.raises(ConfigError, match=match) as e:
        experiment.run(c, wd, progress=False)
    assert "\n" not in str(e.value)
    assert not wd.exists()


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"attack.name": "cpa", "model.name": "resnet18"}, "attack.layer='fc1'"),
        ({"attack.name": "cpa", "model.name": "cnn"}, "attack.layer='fc1'"),
        ({"attack.name": "ggl", "attack.labels": "idlg"}, "attack.labels"),
    ],
)
def test_impossible_combination_found_by_the_dry_build(tmp_path, changes, match):
    """Found in the planning phase (a stand-in observation), not after FedAvg has trained."""
    c = _config()
    for k in [k for k in c.attack if k not in RUN_KEYS]:
        del c.attack[k]
    for k, v in changes.items():
        g, f = k.split(".")
        c[g][f] = v
    wd = tmp_path / "wd"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match):
        experiment.run(c, wd, progress=False)
    assert time.perf_counter() - t0 < 60  # generous: minutes of training are what it avoids
    assert not wd.exists()


def test_unwritable_workdir_is_one_line(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    unwritable = parent if not os.access(parent, os.W_OK) else pathlib.Path("/proc")
    try:  # as root every directory is writable: /proc is not
        with pytest.raises(ConfigError, match="not writable") as e:
            experiment.run(_config(), unwritable / "leakjax-wd", progress=False)
        assert "\n" not in str(e.value)
    finally:
        parent.chmod(0o700)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        experiment.run(_config(), file / "wd", progress=False)


def test_cli_unknown_attack_key_and_settable_attack_keys(tmp_path):
    out, _ = _cli(
        TINY,
        "--config.attack.name=cpa",
        "--config.attack.temprature=1",
        f"--workdir={tmp_path / 'a'}",
    )
    assert out.returncode == 2
    assert _error_line(out).startswith("leakjax: error: attack.temprature is not a setting of cpa")
    assert not (tmp_path / "a").exists()
    # a DLF key that no config file sets reaches the binder (and its type check)
    out, _ = _cli(
        TINY,
        "--config.attack.name=dlf",
        "--config.attack.reorder=abc",
        f"--workdir={tmp_path / 'b'}",
    )
    assert out.returncode == 2
    assert "attack.reorder must be a number" in _error_line(out)


def test_cli_late_check_exits_2_quickly_and_leaves_no_workdir(tmp_path):
    wd = tmp_path / "wd"
    out, seconds = _cli(
        TINY, "--config.attack.name=cpa", "--config.model.name=resnet18", f"--workdir={wd}"
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "attack.layer" in _error_line(out)
    assert "[fedavg]" not in out.stdout  # found before FedAvg started (no timing assertion:
    del seconds  # 14 s on a quiet machine, BUILD_NOTES "Architecture")
    assert not wd.exists()


def test_cli_attack_name_override_runs_the_attack_defaults(tmp_path):
    """``--config.attack.name=dlg`` on the IG quickstart: the file's IG settings are dropped,
    DLG runs at its documented lr 1.0, and config.json records the resolved settings."""
    wd = tmp_path / "wd"
    out, _ = _cli(
        TINY,
        "--config.attack.name=dlg",
        "--config.attack.mode=gradient",
        "--config.attack.steps=2",
        "--config.attack.chunk=2",
        "--config.attack.linesearch=none",
        f"--workdir={wd}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "attack.tv are not applied" in out.stderr
    resolved = json.loads((wd / "config.json").read_text())["attack_settings"]
    assert resolved["lr"] == 1.0 and resolved["linesearch"] == "none"
    assert resolved["lbfgs_memory"] == 100


def test_cli_help_lists_the_program_flags():
    out, _ = _cli("--help")
    assert out.returncode == 0
    for flag in ("--config", "--workdir", "--resume", "--debug", "--list", "Exit codes"):
        assert flag in out.stdout


def test_cli_unknown_fields_name_the_full_key(tmp_path):
    for arg, want in [
        ("--config.fl.bogus=1", "leakjax: error: fl.bogus is not a config setting"),
        ("--config.model.bogus=x", "leakjax: error: model.bogus is not a config setting"),
        ("--config.attack.bogus=1", "leakjax: error: attack.bogus is not a setting of ig"),
    ]:
        out, _ = _cli(TINY, arg, f"--workdir={tmp_path / 'wd'}")
        assert out.returncode == 2
        assert _error_line(out).startswith(want), out.stderr[-1000:]
    assert not (tmp_path / "wd").exists()


def test_allowed_values_are_listed_once():
    c = base_config()
    c.attack.name, c.attack.labels = "idlg", "magic"
    with pytest.raises(ConfigError) as e:
        attacks.get("idlg").bind(c.attack)
    assert str(e.value).count("'idlg'") == 2  # the name and once in the allowed values


def test_rounds_ignored_in_gradient_mode_and_named_in_fedavg():
    c = base_config()
    c.fl.rounds, c.attack.mode, c.attack.rounds = 0, "gradient", (-1,)
    from leakjax.config import validate

    validate(c)  # attack.rounds is not used without FedAvg rounds
    c.fl.rounds, c.attack.mode, c.attack.rounds = 3, "fedavg", (5,)
    with pytest.raises(ConfigError, match=r"attack.rounds entry 5 is not a round: use -3..2"):
        validate(c)
