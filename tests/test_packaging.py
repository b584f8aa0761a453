"""The configs ship inside the package: `leakjax --config=quickstart.py` works from a wheel."""

import os
import pathlib
import subprocess
import sys
import tomllib

from leakjax import config_files

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_package_list_names_every_package():
    """pyproject lists the packages explicitly (configs/ is mapped into leakjax.configs), so a
    new subpackage of leakjax/ must be added there or the wheel would lack it."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "leakjax").rglob("__init__.py")
    }
    configs = {
        "leakjax.configs" + "".join("." + q for q in d.relative_to(ROOT / "configs").parts)
        for d in [ROOT / "configs", *(ROOT / "configs").rglob("*")]
        if d.is_dir() and any(d.glob("*.py")) and d.name != "__pycache__"
    }
    assert set(tool["packages"]) == on_disk | configs
    assert tool["package-dir"] == {"leakjax.configs": "configs"}
    assert not (ROOT / "leakjax" / "configs").exists()  # one copy of the configs: configs/


def test_resolve_against_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing named configs/ here
    assert config_files.root() == ROOT / "configs"
    assert config_files.resolve("quickstart.py") == str(ROOT / "configs" / "quickstart.py")
    assert config_files.resolve("configs/quickstart.py:tiny") == (
        str(ROOT / "configs" / "quickstart.py") + ":tiny"
    )
    fig = "paper/fig07_ig_gradient.py:cpu"
    assert config_files.resolve(fig) == str(ROOT / "configs" / fig)
    assert config_files.resolve("nope.py:tiny") == "nope.py:tiny"  # the error names the input
    (tmp_path / "quickstart.py").write_text("def get_config():\n    return None\n")
    assert config_files.resolve("quickstart.py") == "quickstart.py"  # cwd wins


def test_wheel_ships_configs_and_cli_resolves_them(tmp_path):
    """Build the wheel, install it (no deps: they are this venv's) into a target folder, and
    load packaged configs from a directory with no configs/ in it."""
    wheels, site = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", str(ROOT), "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("leakjax-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    assert (site / "leakjax" / "configs" / "paper" / "_common.py").is_file()
    assert (site / "leakjax" / "configs" / "paper" / "README.md").is_file()
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    script = (
        "import leakjax, pathlib\n"
        "from leakjax import config_files, sweep\n"
        f"assert pathlib.Path(leakjax.__file__).is_relative_to({str(site)!r}), leakjax.__file__\n"
        "spec = config_files.resolve('paper/fig07_ig_gradient.py:tiny')\n"
        "assert spec.startswith(str(pathlib.Path(leakjax.__file__).parent / 'configs')), spec\n"
        "c = sweep.load_config(spec)\n"  # imports _common from the packaged folder
        "print('loaded', c.attack.name, c.data.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=run_dir, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "loaded ig" in out.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "leakjax.cli", "--config=quickstart.py:tiny", "--list=attacks"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("ig: "), cli.stdout  # the file's attack, its settings


def test_cli_unknown_config_still_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "leakjax.cli", "--config=nothere.py", f"--workdir={tmp_path / 'w'}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "nothere.py" in out.stderr and len(out.stderr.strip().splitlines()) == 1
