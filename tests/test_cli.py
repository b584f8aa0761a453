"""The command line and config files (issue 33): every check runs before anything is written,
a bad config file or key is one line naming it (exit 2), ``--list`` names what it lists,
a ``~`` workdir is expanded once, ``--resume`` compares resolved values."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from leakjax import config_files, experiment, provenance
from leakjax.config import validate
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "--config=configs/quickstart.py:tiny"


def _tiny():
    import importlib.util

    spec = importlib.util.spec_from_file_location("qs", ROOT / "configs" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny")


def _cli(*args, cwd=ROOT, env=None, timeout=300):
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    env.setdefault("LEAKJAX_JAX_CACHE", str(ROOT / ".jax_cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "leakjax", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _only_error_line(out) -> str:
    """stderr is exactly one line, the error (no note, no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leakjax: error: "), out.stderr[-2000:]
    return lines[0].removeprefix("leakjax: error: ")


_FILES = {
    "dict": ("def get_config():\n    return {'data': {'name': 'digits'}}\n", "returned a dict"),
    "boom": ("def get_config():\n    raise RuntimeError('boom')\n", "raised RuntimeError: boom"),
    "noget": ("X = 1\n", "defines no get_config()"),
    "binary": (b"\x00\x01\xff\xfe" * 20, "cannot be loaded (SyntaxError"),
    "typo": (
        "from leakjax.config import base_config\n\ndef get_config():\n"
        "    c = base_config()\n    c.fl.lrr = 0.3\n    return c\n",
        None,
    ),
}


def _write(tmp_path, name) -> pathlib.Path:
    text, _ = _FILES[name]
    path = tmp_path / f"{name}.py"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("name", ["dict", "boom", "noget", "binary"])
def test_bad_config_file_names_the_file_and_the_cause(tmp_path, name):
    """Item 2 (a plain dict: was a traceback, exit 1) and item 8 ("unknown config field
    'boom'"; Python's words without the file's name)."""
    path = _write(tmp_path, name)
    with pytest.raises(ConfigError) as e:
        config_files.load(str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and _FILES[name][1] in msg
    assert "unknown config field" not in msg
    with pytest.raises(ConfigError, match="config file not found"):
        config_files.load(str(tmp_path / "missing.py"))


@pytest.mark.parametrize("name", ["dict", "boom"])
def test_cli_bad_config_file_is_one_line_exit_2(tmp_path, name):
    wd = tmp_path / "wd"
    out = _cli(f"--config={_write(tmp_path, name)}", f"--workdir={wd}")
    assert out.returncode == 2, out.stderr[-2000:]
    line = _only_error_line(out)
    assert _FILES[name][1] in line and f"{name}.py" in line
    assert not wd.exists()


@pytest.mark.parametrize(
    "group,key,value,want",
    [
        ("fl", "lrr", 0.3, "fl.lrr is not a config setting; did you mean fl.lr?"),
        ("data", "nmae", "x", "data.nmae is not a config setting; did you mean data.name?"),
        ("output", "bogus", 1, "output.bogus is not a config setting (settings of output"),
    ],
)
def test_unknown_key_in_a_config_file_is_refused(tmp_path, group, key, value, want):
    """Unknown keys inside a config file were silently ignored (the run went on)."""
    c = _tiny()
    c[group][key] = value
    wd = tmp_path / "wd"
    with pytest.raises(ConfigError) as e:
        experiment.run(c, wd, progress=False)
    assert str(e.value).startswith(want) and "\n" not in str(e.value)
    assert not wd.exists()


def test_cli_unknown_key_in_file_and_near_miss_on_the_command_line(tmp_path):
    """The same one line for a file's key and the command line's (was the garbled
    ``'\\'lrr\\'\\nDid you mean "lr"...'``)."""
    want = "fl.lrr is not a config setting; did you mean fl.lr? (settings of fl: "
    for args in ([f"--config={_write(tmp_path, 'typo')}"], [TINY, "--config.fl.lrr=0.3"]):
        out = _cli(*args, f"--workdir={tmp_path / 'wd'}")
        assert out.returncode == 2, out.stderr[-2000:]
        assert _only_error_line(out).startswith(want)
    assert not (tmp_path / "wd").exists()


def test_empty_attack_rounds_is_refused():
    """Item 4: attack.rounds=() attacked nothing (exit 0)."""
    c = _tiny()
    c.attack.rounds = ()
    with pytest.raises(ConfigError, match=r"attack.rounds=\(\) attacks no round"):
        validate(c)


@pytest.mark.parametrize(
    "args,want",
    [
        (["--config.attack.rounds=()"], "attack.rounds=() attacks no round"),
        # item 5: no "note: attack.name='dlg' overrides the file's 'ig'" line before the error
        (["--config.attack.name=dlg", "--config.attack.steps=-1"], "attack.steps must be > 0"),
    ],
)
def test_cli_refusals_print_one_line(tmp_path, args, want):
    wd = tmp_path / "wd"
    out = _cli(TINY, *args, f"--workdir={wd}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert _only_error_line(out).startswith(want)
    assert not wd.exists()


@pytest.mark.parametrize(
    "defense,fl",
    [({"secure_agg_clients": 101}, {}), ({"secure_agg_clients": 20}, {"client_fraction": 0.1})],
)
def test_secure_agg_group_larger_than_a_round_is_refused_before_writing(tmp_path, defense, fl):
    """Item 1: the check ran in FedAvg after config.json was written; the corrected rerun
    was then refused as "not empty"."""
    c = _tiny()
    c.defense.name = "secure_agg"
    c.defense.update(defense)
    c.fl.update(fl)
    wd = tmp_path / "wd"
    with pytest.raises(ConfigError, match="defense.secure_agg_clients=.* exceeds the"):
        experiment.run(c, wd, progress=False)
    assert not wd.exists()  # the corrected rerun finds a new workdir


def test_list_attacks_names_the_chosen_or_the_files_attack():
    """Item 9: an unknown attack.name gave the generic list (exit 0); a config file's attack
    was not described."""
    out = _cli("--list=attacks", "--config.attack.name=nope")
    assert out.returncode == 2
    assert _only_error_line(out).startswith("attack.name='nope' is not one of")
    out = _cli("--list=attacks", "--config=configs/quickstart.py")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ig: ") and "  tv = " in out.stdout


def test_tilde_workdir_is_expanded_before_the_writability_check(tmp_path, monkeypatch):
    """Item 10: ``'~/x'`` was checked as ./~ (the current directory) but written to the home."""
    monkeypatch.setenv("HOME", "/proc/leakjax-no-home")  # not writable, even as root
    monkeypatch.chdir(tmp_path)  # writable: the old check passed here
    with pytest.raises(ConfigError, match="/proc.*is not writable"):
        experiment.run(_tiny(), "~/x", progress=False)
    assert not (tmp_path / "~").exists()


@pytest.mark.slow
def test_cli_tilde_workdir_leaves_nothing_outside_the_home(tmp_path):
    """Item 10: the checkpoint went to ./~/x/checkpoints (8.8 MB left behind)."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    out = _cli(
        "--config=" + str(ROOT / "configs" / "quickstart.py") + ":tiny",
        "--config.fl.rounds=1",
        "--config.attack.steps=2",
        "--config.attack.chunk=2",
        "--workdir=~/x",
        cwd=cwd,
        env=dict(os.environ, HOME=str(home)),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(cwd.iterdir()) == []
    assert (home / "x" / "metrics.json").is_file() and not (home / "x" / "checkpoints").exists()
    assert f"results in {home / 'x'}" in out.stdout


def test_resume_compares_resolved_values(tmp_path):
    """Item 11: ``attack.lr=0.1`` (IG's default) on --resume was "'<unset>' -> 0.1"."""
    provenance.write_config(_tiny(), tmp_path)
    c = _tiny()
    c.attack.lr = 0.1  # the default, now explicit
    experiment._check_resume(c, tmp_path)
    c.attack.lr = 0.2
    with pytest.raises(ConfigError, match=r"attack.lr \(0.1 -> 0.2\)"):
        experiment._check_resume(c, tmp_path)
