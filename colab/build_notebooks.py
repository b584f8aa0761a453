"""Writes the Colab notebooks in colab/ and README.md's "Colab / TPU" section from the sources
below (run after edits; tests/test_notebooks.py checks that the files are up to date):

    python colab/build_notebooks.py          # write
    python colab/build_notebooks.py --check  # exit 1 if a file differs from what would be written

Every notebook starts with the same three cells: REPO_URL (where leakjax is installed from:
PROJECT_URL below, the one place the project's URL is written), the install (skipped when
leakjax is importable, e.g. in a local venv; else pip installs it with the jax build of the
runtime: ``leakjax[tpu]`` on a TPU, ``leakjax[cuda]`` on a GPU), and the devices (every device
of the runtime: ``fl.num_devices = attack.num_devices = 0``, "all", when there are several).
They read LEAKJAX_TINY=1 to shrink their settings, which is how tests/test_notebooks.py runs them.
"""

import pathlib
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent
README = HERE.parent / "README.md"

PROJECT_URL = "https://github.com/leakjax/leakjax"
COLAB_URL = PROJECT_URL.replace("https://github.com/", "https://colab.research.google.com/github/")

REPO_CELL_MD = (
    "**Setup.** On Colab pick a TPU or GPU runtime (*Runtime > Change runtime type*), then run "
    "the cells below. `REPO_URL` is where leakjax is installed from: change it to install a "
    "fork, or add `@BRANCH` for a branch or tag."
)
REPO_CELL = f'''REPO_URL = "{PROJECT_URL}"  # change for a fork; "...@BRANCH" for a branch or tag'''

INSTALL = '''# Install leakjax (skipped when it is already importable, e.g. in a local venv) with the jax
# build of this runtime. Its dependencies are version ranges, so Colab's preinstalled numpy,
# scipy, ... stay where they fit.
import glob
import importlib.util
import os
import shutil
import subprocess
import sys


def accelerator():
    """'tpu', 'cuda' or '' (CPU), read off the machine before jax is imported."""
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return "tpu"
    return "cuda" if shutil.which("nvidia-smi") else ""


if importlib.util.find_spec("leakjax") is None:
    extra = accelerator()
    target = f"leakjax[{extra}] @ git+{REPO_URL}" if extra else f"leakjax @ git+{REPO_URL}"
    print("pip install", repr(target))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", target], check=True)
    if "jax" in sys.modules:  # an older jax is already loaded in this kernel
        raise SystemExit("leakjax installed: restart the runtime (Runtime > Restart session), then run again")
TINY = os.environ.get("LEAKJAX_TINY", "0") == "1"   # tests run every notebook with tiny settings'''

DEVICES = """# Every device of the runtime (8 TPU cores on a v2-8): FedAvg's clients and the attack's trials
# are split over a 1-D device mesh; num_devices=0 means "all" (leakjax/config.py), and leakjax
# pads clients / trials to a multiple of the device count, so any count works.
import jax

DEVICE_COUNT = len(jax.devices())
NUM_DEVICES = 0 if DEVICE_COUNT > 1 else 1


def use_all_devices(config):
    config.fl.num_devices = config.attack.num_devices = NUM_DEVICES
    return config


print(f"JAX {jax.__version__}, backend {jax.default_backend()}: {DEVICE_COUNT} device(s) in use "
      f"({jax.devices()[0].device_kind}; num_devices={NUM_DEVICES})")"""


def setup_cells():
    return [
        new_markdown_cell(REPO_CELL_MD),
        new_code_cell(REPO_CELL),
        new_code_cell(INSTALL),
        new_code_cell(DEVICES),
    ]


QUICKSTART = [
    new_markdown_cell(
        "# leakjax quickstart\n\nFedAvg on scikit-learn's built-in digits (no download), then "
        "Inverting Gradients on two clients' last-round updates: the packaged "
        "`configs/quickstart.py` through the same `run(config, workdir)` the `leakjax` command "
        "calls. Paper: [arXiv 2409.19301](https://arxiv.org/abs/2409.19301)."
    ),
    *setup_cells(),
    new_code_cell(
        """import json
import pathlib
import tempfile

from leakjax import config_files, experiment, sweep

# configs/ ships inside the package: the same file as `leakjax --config=quickstart.py`
spec = f"{config_files.root() / 'quickstart.py'}:{'tiny' if TINY else ''}"
config = use_all_devices(sweep.load_config(spec))
workdir = pathlib.Path(tempfile.mkdtemp(prefix="leakjax-qs-")) / "run"
summary = experiment.run(config, workdir)
meta = json.loads((workdir / "config.json").read_text())
print(f"ran on {meta['_meta']['device']['num_devices']} device(s): "
      f"fl.num_devices={meta['fl']['num_devices']}, attack.num_devices={meta['attack']['num_devices']}")"""
    ),
    new_code_cell(
        """keys = ["images_attacked", "psnr_mean", "psnr_median", "ssim_mean", "success_rate",
        "label_accuracy", "final_test_acc", "wall_seconds"]
print(json.dumps({k: summary[k] for k in keys}, indent=1))
assert summary["images_attacked"] > 0"""
    ),
    new_code_cell(
        """from IPython.display import Image, display

display(Image(filename=str(workdir / "grid.png")))
display(Image(filename=str(workdir / "fl_accuracy.png")))"""
    ),
]

WALKTHROUGH = [
    new_markdown_cell(
        "# A FedAvg update, attacked step by step\n\nBuild a FedAvg simulation, keep what the "
        "server sees of one client (an `Observation`), and run Inverting Gradients on it with "
        "`leakjax.attacks.run`, plotting the objective and the images. The attack simulates the "
        "client with `leakjax.fl.client_update` — the same function the simulator trains with."
    ),
    *setup_cells(),
    new_markdown_cell(
        "**Data.** CIFAR-10 through TensorFlow Datasets where the runtime reaches the internet "
        "(Colab: prepared once into `~/tensorflow_datasets`, then read by leakjax without "
        "TensorFlow); the built-in digits (scikit-learn, offline) where it does not, and in the "
        "tests' tiny mode."
    ),
    new_code_cell(
        """import pathlib
import socket

from leakjax import data


def online(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def cifar10_or_digits(limit=5000):
    \"\"\"CIFAR-10 (its first `limit` images of each split) via TFDS when online, else digits.\"\"\"
    if TINY:
        return data.load("digits"), "digits (tiny mode)"
    if not online():
        return data.load("digits"), "digits (no internet)"
    try:
        import tensorflow_datasets as tfds
        tfds_dir = pathlib.Path.home() / "tensorflow_datasets"
        tfds.builder("cifar10", data_dir=str(tfds_dir)).download_and_prepare(file_format="array_record")
        return data.load("cifar10", tfds_dir, source="tfds", limit=limit), f"cifar10 (TFDS, {limit} images)"
    except Exception as e:  # no TensorFlow to prepare it, a download error, ...
        return data.load("digits"), f"digits (CIFAR-10 via TFDS failed: {type(e).__name__}: {e})"


ds, why = cifar10_or_digits()
print("data:", why, ds.info.image_shape, len(ds.train_labels), "training images")"""
    ),
    new_code_cell(
        """import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from leakjax import attacks, metrics, models
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import FLSettings, client_mesh, simulate

mean, std = data.normalization(ds.info, "dataset")
part = data.partition(ds.train_labels, 200, "iid", seed=0)
train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
local_test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
model = models.get("cnn", ds.info.num_classes, ds.info.image_shape)
settings = FLSettings(rounds=2 if TINY else 3, epochs=1, batch_size=3, lr=0.05)
mesh = None if NUM_DEVICES == 1 else client_mesh(NUM_DEVICES)   # clients over all devices
print("FedAvg clients split over", 1 if mesh is None else mesh.devices.size, "device(s)")
sim = simulate(model, train, local_test, ds.test_images, ds.test_labels, mean, std, settings,
               jax.random.key(0), attack_rounds=[settings.rounds - 1], attack_clients=1, mesh=mesh)
obs, truth = sim.observations[0], sim.truths[0]
print("attacked client", obs.client_id, "round", obs.round, "samples", obs.num_samples,
      "local steps", obs.hp.epochs * -(-obs.num_samples // obs.hp.batch_size), "lr", obs.hp.lr)"""
    ),
    new_code_cell(
        """steps = 60 if TINY else 2000
lo, hi = data.box(mean, std)
atk = ig.make(obs, model, ig.IGConfig(tv=1e-4), steps=steps, box=(jnp.asarray(lo), jnp.asarray(hi)))
res = attacks.run(atk, jax.random.key(1), steps=steps, restarts=2, chunk=max(steps // 4, 1),
                  num_devices=NUM_DEVICES)   # the trials over all devices
plt.semilogy(res.losses[0].T); plt.xlabel("step"); plt.ylabel("1 - cos"); plt.title("IG objective per restart")
plt.show()"""
    ),
    new_code_cell(
        """to01 = lambda x: np.clip(np.asarray(data.denormalize(np.asarray(x), mean, std)), 0, 1)
show = lambda im: im[..., 0] if im.shape[-1] == 1 else im   # grey digits or RGB CIFAR-10
rec, true = to01(res.reconstruction.images[0]), to01(truth.images)
ev = metrics.evaluate(rec, true, recon_labels=res.reconstruction.labels[0], truth_labels=truth.labels)
print({k: ev[k] for k in ("psnr_mean", "ssim_mean", "success_rate", "label_accuracy")})
r_idx, t_idx = metrics.match(rec, true)
fig, ax = plt.subplots(2, len(t_idx), figsize=(1.5 * len(t_idx), 3), squeeze=False)
for j, (ri, ti) in enumerate(zip(r_idx, t_idx)):
    ax[0, j].imshow(show(true[ti]), cmap="gray"); ax[1, j].imshow(show(rec[ri]), cmap="gray")
    ax[0, j].axis("off"); ax[1, j].axis("off")
plt.show()
assert np.isfinite(ev["psnr_mean"])"""
    ),
]

PAPER_STUDY = [
    new_markdown_cell(
        "# The paper's study with leakjax-sweep\n\nRuns configs from `configs/paper/` (one file "
        "per figure of [arXiv 2409.19301](https://arxiv.org/abs/2409.19301), section IV; the "
        "table is in `configs/paper/README.md`; they ship inside the package) through the same "
        "sweep runner as `leakjax-sweep`: Inverting Gradients on FedAvg updates (Fig. 20) and "
        "FedAvg without an attack for two models (Fig. 48). Each config's `cpu` preset takes 1-3 "
        "minutes on a 2-core CPU; its default preset is the paper's full setting, for a GPU."
    ),
    *setup_cells(),
    new_code_cell(
        """import json
import pathlib
import tempfile
from unittest import mock

from leakjax import config_files, sweep

PAPER = config_files.root() / "paper"   # configs/paper of the installed package (or checkout)
preset = "tiny" if TINY else "cpu"   # '' would be the paper's full setting (GPU, real data)
specs = [f"{PAPER}/{name}.py:{preset}" for name in
         ("fig20_ig_fedavg_100clients", "fig48_fl_accuracy_cnn", "fig48_fl_accuracy_mlp")]
workdir = pathlib.Path(tempfile.mkdtemp(prefix="leakjax-paper-")) / "study"
load = sweep.load_config   # every config of the sweep runs on all devices
with mock.patch.object(sweep, "load_config", lambda spec: use_all_devices(load(spec))):
    rows = sweep.run_sweep(specs, workdir)
assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
for r in rows:
    c = json.loads((workdir / r["experiment"] / "config.json").read_text())
    print(f"{r['experiment']}: {r['status']} on {c['_meta']['device']['num_devices']} device(s), "
          f"fl.num_devices={c['fl']['num_devices']}, attack.num_devices={c['attack']['num_devices']}")"""
    ),
    new_code_cell(
        """from IPython.display import Image, Markdown, display

display(Markdown((workdir / "results.md").read_text()))   # one row per experiment"""
    ),
    new_code_cell(
        """display(Image(filename=str(workdir / "fl_accuracy.png")))     # Fig. 48: accuracy vs round per model
display(Image(filename=str(workdir / "contact_sheet.png")))   # every attack's truth vs reconstruction"""
    ),
    new_markdown_cell(
        "The whole study, from a shell in a leakjax checkout:\n\n"
        "```\n"
        "leakjax-sweep --configs='configs/paper/*.py:cpu' --workdir=runs/paper-cpu   # ~1 h on CPU\n"
        "leakjax-sweep --configs='configs/paper/*.py' --workdir=runs/paper           # GPU, real data\n"
        "```\n\n"
        "With `LEAKJAX_SHARED_DATA` pointing at real CIFAR-10 / MNIST files the `cpu` variants use "
        "them instead of the offline digits; `LEAKJAX_GGL_GENERATOR` names a pretrained GGL "
        "generator (`python -m leakjax.train_generator`)."
    ),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "fedavg_attack_walkthrough.ipynb": WALKTHROUGH,
    "paper_study.ipynb": PAPER_STUDY,
}

README_BEGIN = "<!-- colab-section: written by colab/build_notebooks.py -->"
README_END = "<!-- /colab-section -->"


def readme_section() -> str:
    links = ", ".join(
        f"[{name.removesuffix('.ipynb')}]({COLAB_URL}/blob/main/colab/{name})" for name in NOTEBOOKS
    )
    return f"""{README_BEGIN}
## Colab / TPU

The notebooks in `colab/` ({links}) install leakjax from {PROJECT_URL} (their `REPO_URL`
cell names a fork or a branch instead) with the jax build of the runtime, and run FedAvg's
clients and the attack's trials on every device (`fl.num_devices = attack.num_devices = 0`,
"all"; leakjax pads them to a multiple of the device count). Outside a notebook:

```bash
pip install "leakjax[tpu] @ git+{PROJECT_URL}"    # TPU runtime (jax[tpu])
pip install "leakjax[cuda] @ git+{PROJECT_URL}"   # CUDA 12 GPU (jax[cuda12])
pip install "leakjax @ git+{PROJECT_URL}"         # CPU
leakjax --config=quickstart.py --config.fl.num_devices=0 --config.attack.num_devices=0 --workdir=runs/qs
```

The configs ship inside the package: a `--config` path that does not exist in the working
directory names the packaged one (`quickstart.py`, `paper/fig07_ig_gradient.py:cpu`).
pyproject.toml declares version ranges, so Colab's preinstalled packages stay where they fit;
the exact versions CI tests are in `constraints.txt` (`pip install -c constraints.txt ...`).
{README_END}"""


def render_readme(text: str) -> str:
    if README_BEGIN in text:
        head, rest = text.split(README_BEGIN, 1)
        return head + readme_section() + rest.split(README_END, 1)[1]
    marker = "\n## Configs\n"  # a new section goes before "Configs"
    head, tail = text.split(marker, 1)
    return head + "\n" + readme_section() + "\n" + marker + tail


def render(name, cells) -> str:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes nothing
        cell["id"] = f"{name.removesuffix('.ipynb')}-{i}"
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["colab"] = {"provenance": []}
    return nbformat.writes(nb) + "\n"


def outputs() -> dict[pathlib.Path, str]:
    files = {HERE / name: render(name, cells) for name, cells in NOTEBOOKS.items()}
    files[README] = render_readme(README.read_text())
    return files


def main(argv) -> int:
    stale = [p for p, text in outputs().items() if not p.is_file() or p.read_text() != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p} is out of date: run python colab/build_notebooks.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs().items():
        p.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
