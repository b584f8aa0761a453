"""Writes the Colab notebooks in colab/ from the cell sources below (run after edits):

    python colab/build_notebooks.py

Every notebook starts with the same install cell (works on Colab and locally) and reads
LEAKJAX_TINY=1 to shrink its settings, which is how tests/test_notebooks.py runs them.
"""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent

INSTALL = '''# Install leakjax (skipped when it is already importable, e.g. in a local venv).
# On Colab, set REPO_URL to the git URL where you host leakjax.
import importlib.util, os, subprocess, sys
REPO_URL = os.environ.get("LEAKJAX_REPO_URL", "")
if importlib.util.find_spec("leakjax") is None:
    if not REPO_URL:
        raise SystemExit("leakjax is not installed: set REPO_URL (or LEAKJAX_REPO_URL) to its git URL")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO_URL}"], check=True)
TINY = os.environ.get("LEAKJAX_TINY", "0") == "1"   # tests run every notebook with tiny settings
import jax
print("JAX", jax.__version__, "backend:", jax.default_backend(), jax.devices())'''

QUICKSTART = [
    new_markdown_cell(
        "# leakjax quickstart\n\nFedAvg on scikit-learn's built-in digits (no download), then "
        "Inverting Gradients on two clients' last-round updates. The same `run(config, workdir)` "
        "the `leakjax` command calls. Paper: [arXiv 2409.19301](https://arxiv.org/abs/2409.19301)."
    ),
    new_code_cell(INSTALL),
    new_code_cell(
        '''import json, pathlib, tempfile
from leakjax import experiment
from leakjax.config import base_config

def quickstart_config(tiny):
    c = base_config()
    c.data.name, c.data.partition, c.model.name = "digits", "iid", "cnn"
    c.fl.num_clients, c.fl.rounds, c.fl.local_epochs, c.fl.batch_size, c.fl.lr = 100, 5, 1, 4, 0.05
    c.attack.name, c.attack.mode, c.attack.clients = "ig", "fedavg", 2
    c.attack.steps, c.attack.restarts, c.attack.chunk, c.attack.tv = 1500, 2, 250, 1e-4
    if tiny:
        c.fl.rounds, c.attack.steps, c.attack.chunk, c.attack.restarts = 2, 60, 30, 1
    return c

config = quickstart_config(TINY)
workdir = pathlib.Path(tempfile.mkdtemp(prefix="leakjax-qs-")) / "run"
summary = experiment.run(config, workdir)'''
    ),
    new_code_cell(
        '''keys = ["images_attacked", "psnr_mean", "psnr_median", "ssim_mean", "success_rate",
        "label_accuracy", "final_test_acc", "wall_seconds"]
print(json.dumps({k: summary[k] for k in keys}, indent=1))
assert summary["images_attacked"] > 0'''
    ),
    new_code_cell(
        '''from IPython.display import Image, display
display(Image(filename=str(workdir / "grid.png")))
display(Image(filename=str(workdir / "fl_accuracy.png")))'''
    ),
]

WALKTHROUGH = [
    new_markdown_cell(
        "# A FedAvg update, attacked step by step\n\nBuild a FedAvg simulation, keep what the "
        "server sees of one client (an `Observation`), and run Inverting Gradients on it with "
        "`leakjax.attacks.run`, plotting the objective and the images. The attack simulates the "
        "client with `leakjax.fl.client_update` — the same function the simulator trains with."
    ),
    new_code_cell(INSTALL),
    new_code_cell(
        '''import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
from leakjax import attacks, data, metrics, models
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import FLSettings, simulate

ds = data.load("digits")
mean, std = data.normalization(ds.info, "dataset")
part = data.partition(ds.train_labels, 200, "iid", seed=0)
train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
local_test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
model = models.get("cnn", ds.info.num_classes, ds.info.image_shape)
settings = FLSettings(rounds=2 if TINY else 3, epochs=1, batch_size=3, lr=0.05)
sim = simulate(model, train, local_test, ds.test_images, ds.test_labels, mean, std, settings,
               jax.random.key(0), attack_rounds=[settings.rounds - 1], attack_clients=1)
obs, truth = sim.observations[0], sim.truths[0]
print("attacked client", obs.client_id, "round", obs.round, "samples", obs.num_samples,
      "local steps", obs.hp.epochs * -(-obs.num_samples // obs.hp.batch_size), "lr", obs.hp.lr)'''
    ),
    new_code_cell(
        '''steps = 60 if TINY else 2000
lo, hi = data.box(mean, std)
atk = ig.make(obs, model, ig.IGConfig(tv=1e-4), steps=steps, box=(jnp.asarray(lo), jnp.asarray(hi)))
res = attacks.run(atk, jax.random.key(1), steps=steps, restarts=2, chunk=max(steps // 4, 1))
plt.semilogy(res.losses[0].T); plt.xlabel("step"); plt.ylabel("1 - cos"); plt.title("IG objective per restart")
plt.show()'''
    ),
    new_code_cell(
        '''to01 = lambda x: np.clip(np.asarray(data.denormalize(np.asarray(x), mean, std)), 0, 1)
rec, true = to01(res.reconstruction.images[0]), to01(truth.images)
ev = metrics.evaluate(rec, true, recon_labels=res.reconstruction.labels[0], truth_labels=truth.labels)
print({k: ev[k] for k in ("psnr_mean", "ssim_mean", "success_rate", "label_accuracy")})
r_idx, t_idx = metrics.match(rec, true)
fig, ax = plt.subplots(2, len(t_idx), figsize=(1.5 * len(t_idx), 3))
for j, (ri, ti) in enumerate(zip(r_idx, t_idx)):
    ax[0, j].imshow(true[ti, ..., 0], cmap="gray"); ax[1, j].imshow(rec[ri, ..., 0], cmap="gray")
    ax[0, j].axis("off"); ax[1, j].axis("off")
plt.show()
assert np.isfinite(ev["psnr_mean"])'''
    ),
]

PAPER_STUDY = [
    new_markdown_cell(
        "# The paper's study with leakjax-sweep\n\nRuns configs from `configs/paper/` (one file "
        "per figure of [arXiv 2409.19301](https://arxiv.org/abs/2409.19301), section IV; the "
        "table is in `configs/paper/README.md`) through the same sweep runner as "
        "`leakjax-sweep`: Inverting Gradients on FedAvg updates (Fig. 20) and FedAvg without an "
        "attack for two models (Fig. 48). Each config's `cpu` preset takes 1-3 minutes on a "
        "2-core CPU; its default preset is the paper's full setting, for a GPU."
    ),
    new_code_cell(INSTALL),
    new_code_cell(
        '''import pathlib, subprocess, tempfile
import leakjax
from leakjax import sweep

def find_paper_configs():
    """configs/paper of a source checkout (local), else a shallow clone of REPO_URL (Colab)."""
    for base in (pathlib.Path(leakjax.__file__).resolve().parents[1], pathlib.Path.cwd()):
        if (base / "configs" / "paper").is_dir():
            return base / "configs" / "paper"
    if not REPO_URL:
        raise SystemExit("configs/paper not found: set REPO_URL (or LEAKJAX_REPO_URL) to leakjax's git URL")
    dest = pathlib.Path.cwd() / "leakjax-src"
    if not dest.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(dest)], check=True)
    return dest / "configs" / "paper"

PAPER = find_paper_configs()
preset = "tiny" if TINY else "cpu"   # '' would be the paper's full setting (GPU, real data)
specs = [f"{PAPER}/{name}.py:{preset}" for name in
         ("fig20_ig_fedavg_100clients", "fig48_fl_accuracy_cnn", "fig48_fl_accuracy_mlp")]
workdir = pathlib.Path(tempfile.mkdtemp(prefix="leakjax-paper-")) / "study"
rows = sweep.run_sweep(specs, workdir)
print([(r["experiment"], r["status"]) for r in rows])
assert all(r["status"] == "ok" for r in rows)'''
    ),
    new_code_cell(
        '''from IPython.display import Image, Markdown, display
display(Markdown((workdir / "results.md").read_text()))   # one row per experiment'''
    ),
    new_code_cell(
        '''display(Image(filename=str(workdir / "fl_accuracy.png")))     # Fig. 48: accuracy vs round per model
display(Image(filename=str(workdir / "contact_sheet.png")))   # every attack's truth vs reconstruction'''
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


def write(name, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
    write("fedavg_attack_walkthrough.ipynb", WALKTHROUGH)
    write("paper_study.ipynb", PAPER_STUDY)
