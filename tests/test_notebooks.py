"""Every notebook in colab/ runs top to bottom (tiny settings), so none can silently rot; with 8
(fake CPU) devices each one runs its device-mesh path; and the notebooks and README's Colab
section are what colab/build_notebooks.py writes."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
# What each notebook prints when its FedAvg clients / attack trials are split over the devices.
MESH_LINES = {
    "quickstart": "ran on 8 device(s): fl.num_devices=0, attack.num_devices=0",
    "fedavg_attack_walkthrough": "FedAvg clients split over 8 device(s)",
    "paper_study": (
        "fig20_ig_fedavg_100clients-tiny: ok on 8 device(s), fl.num_devices=0, attack.num_devices=0"
    ),
}


def _execute(path, tmp_path, monkeypatch, **env) -> str:
    """Runs the notebook in a fresh kernel (importing this checkout's leakjax); returns its
    printed output and fails on any error output."""
    monkeypatch.setenv("LEAKJAX_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    text = _execute(path, tmp_path, monkeypatch)
    assert "1 device(s) in use" in text or "XLA_FLAGS" in os.environ


# ~100 s each on 2 cores: the quickstart's mesh path runs by default, the others with -m slow
MESH_NOTEBOOKS = [
    p if p.stem == "quickstart" else pytest.param(p, marks=pytest.mark.slow) for p in NOTEBOOKS
]


@pytest.mark.parametrize("path", MESH_NOTEBOOKS, ids=lambda p: getattr(p, "stem", str(p)))
def test_notebook_uses_all_devices(path, tmp_path, monkeypatch):
    """8 fake CPU devices in the kernel: the notebook says it uses all 8 (num_devices=0) and
    its run on the device mesh finishes."""
    text = _execute(
        path,
        tmp_path,
        monkeypatch,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
    )
    assert "8 device(s) in use (cpu; num_devices=0)" in text
    assert MESH_LINES[path.stem] in text


def test_notebooks_and_readme_are_generated():
    """The committed notebooks and README's Colab section are the generator's output, and the
    project URL is written once (the generator's PROJECT_URL) and used everywhere."""
    build = ROOT / "colab" / "build_notebooks.py"
    out = subprocess.run([sys.executable, str(build), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    spec = importlib.util.spec_from_file_location("build_notebooks", build)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.PROJECT_URL in (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        assert f'REPO_URL = "{gen.PROJECT_URL}"' in sources[0]
        assert any("git+{REPO_URL}" in s for s in sources)
        assert not any("REPO_URL = " in s for s in sources[1:])  # one place to change it
