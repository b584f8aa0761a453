"""Settings shared by the paper's experiment configs (configs/paper/*.py; the table is in
configs/paper/README.md).

Every config file is ``get_config(preset)`` with three presets:

- ``''`` (full): the paper's setting (section IV, Table II, and the reference's
  experiments/*.sh), on the real data sets; what a GPU runs.
- ``'cpu'``: the same experiment shrunk to about 1-3 minutes on a 2-core CPU: the offline
  ``digits`` data set (16x16 grey), or the real CIFAR-10 / MNIST files when the environment
  variable ``LEAKJAX_SHARED_DATA`` names a directory holding ``cifar-10-batches-py/`` /
  ``mnist/`` (then at 16x16 and at most 2,000 training images), split IID (too few images for
  Dirichlet(0.5) clients of 15+ images); at most 2 FedAvg rounds (the last one attacked), one
  attacked client (two gradients in gradient mode), and fewer attack steps.
- ``'tiny'``: the cpu variant cut to seconds (a handful of attack steps, one round), for
  tests and the notebook's smoke run.

This module is imported by path (``from _common import ...`` after putting this folder on
``sys.path``), so that the configs also load through ``leakjax-sweep``, which executes each
file with ``importlib``; its leading underscore keeps it out of ``configs/paper/*.py`` sweeps.
"""

from __future__ import annotations

import math
import os
import pathlib

from leakjax.config import base_config

PRESETS = ("", "cpu", "tiny")
ENV_DATA = "LEAKJAX_SHARED_DATA"  # directory with real CIFAR-10 / MNIST files (optional)
ENV_GGL = "LEAKJAX_GGL_GENERATOR"  # a `python -m leakjax.train_generator` checkpoint (GGL)

# Gradient figures: "10 repeated runs" = 10 gradients, each from another client's images.
GRADIENT_RUNS = 10
# FedLeak's options on IG (the fig*_fedleak_* configs; `leakjax.attacks.losses.MatchOptions`):
# match the top half of every tensor's coordinates by |observed update|, penalise the simulated
# update's squared norm (relative to the observed one's) with weight 1e-3
FEDLEAK = {"match_fraction": 0.5, "grad_reg": 1e-3}


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (use one of {PRESETS}: full, cpu, tiny)")
    return preset


def fedavg(
    name: str,
    attack: str,
    *,
    dataset: str = "cifar10",
    model: str = "cnn",
    clients: int = 100,
    batch: int = 10,
    epochs: int = 1,
    rounds: int = 1,
    lr: float = 0.1,
    attack_every_round: bool = False,
):
    """A server-side attack on FedAvg updates, in the paper's FL setting (section IV-C; the
    reference's experiments/fed/*.sh): Dirichlet(0.5) non-IID partition, 20% of each client's
    data for local testing, lr decay 0.95 per round, no momentum, data scaled with mean = std
    = 0.5 (the reference's --normalize); one randomly chosen client attacked per attacked
    round (the last, or every round where the paper shows one row per round)."""
    c = base_config()
    c.name = name
    c.data.name = dataset
    c.data.normalize = "half"
    c.data.partition = "dirichlet"
    c.data.beta = 0.5
    c.data.test_fraction = 0.2
    c.model.name = model
    c.fl.num_clients = clients
    c.fl.client_fraction = 1.0
    c.fl.rounds = rounds
    c.fl.local_epochs = epochs
    c.fl.batch_size = batch
    c.fl.lr = lr
    c.fl.lr_decay = 0.95
    c.fl.momentum = 0.0
    c.fl.weight_decay = 0.0
    c.attack.name = attack
    c.attack.mode = "fedavg"
    c.attack.rounds = tuple(range(rounds)) if attack_every_round else (-1,)
    c.attack.clients = 1
    c.attack.restarts = 1
    return c


def gradient(name: str, attack: str, *, dataset: str = "cifar10", model: str = "cnn", batch=1):
    """A gradient attack (section III's figures; the reference's grad_attack.py): the gradient
    of one batch of real images on the untrained model (no FedAvg round), repeated on
    ``GRADIENT_RUNS`` clients' batches."""
    c = base_config()
    c.name = name
    c.data.name = dataset
    c.data.normalize = "half"
    c.data.partition = "iid"
    c.model.name = model
    c.fl.num_clients = 100
    c.fl.rounds = 0
    c.attack.name = attack
    c.attack.mode = "gradient"
    c.attack.rounds = ()
    c.attack.batch_size = batch
    c.attack.clients = GRADIENT_RUNS
    c.attack.restarts = 1
    return c


def fl_only(name: str, model: str, *, imprint_bins: int = 0):
    """FedAvg without an attack (Fig. 48; the reference's experiments/fed_main.sh): CIFAR-10,
    10 clients, Dirichlet(0.5), 100 rounds, 2 local epochs, batch 50, lr 0.1 (x0.95 per
    round), momentum 0.5."""
    c = fedavg(name, "none", clients=10, batch=50, epochs=2, rounds=100, model=model)
    c.model.imprint_bins = imprint_bins
    c.fl.momentum = 0.5
    c.attack.rounds = ()
    c.attack.clients = 0
    return c


# Fig. 48's resnet18 as `:tiny` (issue 33: every :tiny under 30 s on 2 cores). One batch-50
# training step of resnet18 costs 2.3 s at 16x16 on this CPU and 0.6 s at 8x8, a forward pass
# of 500 test images 10 s at 16x16 (XLA:CPU, measured 2026-12-07); at the cpu preset's 10
# clients x 2 epochs x 16x16 the tiny run took 474 s. So: 5 clients with one local batch of 50
# each (62 images a client, 50 of them for training), 1 epoch, 8x8 images (resnet18's last
# stage then sees a 1x1 map), global accuracy on 200 test images, 2 rounds (a line per model
# still has two points): 25-27 s.
RESNET18_TINY = {
    "fl.num_clients": 5,
    "fl.local_epochs": 1,
    "data.max_train": 310,
    "data.image_size": 8,
    "data.max_test": 200,
    "fl.rounds": 2,
}


def ggl_generator(c) -> None:
    """The pretrained GGL generator: ``$LEAKJAX_GGL_GENERATOR`` when set (train one with
    ``python -m leakjax.train_generator``); without it the run uses an untrained generator,
    i.e. the Fig. 47 ablation, and says so in its name."""
    path = os.environ.get(ENV_GGL, "")
    c.attack.generator_path = path
    if not path:
        c.name += "_untrained_generator"


# training images of the CPU data when no real data is configured: scikit-learn's digits
# (1,797) split 80/20 by leakjax.data
DIGITS_TRAIN = 1437


def max_clients(c) -> int:
    """The most clients whose IID shares of the CPU data still hold one local batch each after
    the 80/20 local split (one image of slack for the rounding of the split)."""
    n = int(c.data.max_train) or DIGITS_TRAIN
    per_client = math.ceil(int(c.fl.batch_size) / (1.0 - float(c.data.test_fraction))) + 1
    return max(1, n // per_client)


def _fit_clients(c) -> None:
    """Fewer clients, where FedAvg trains (gradient-mode attacks only sample a batch), when the
    paper's count cannot give every client a local batch on the small CPU data (100 clients x
    batch 50 need 6,250 images; the CPU study has 2,000): the batch size, the setting these
    figures are about, is kept."""
    trains = int(c.fl.rounds) > 0 and c.attack.mode != "gradient"
    if trains and int(c.fl.num_clients) > max_clients(c):
        c.fl.num_clients = max_clients(c)


def _set(c, key: str, value) -> None:
    group, _, leaf = key.rpartition(".")
    node = c
    for part in group.split(".") if group else ():
        node = node[part]
    node[leaf] = value


def _real_data(dataset: str):
    """(name, data_dir) of real files in $LEAKJAX_SHARED_DATA for a figure's data set."""
    root = os.environ.get(ENV_DATA, "")
    if not root:
        return None
    root_p = pathlib.Path(root)
    if dataset in ("mnist", "fashion_mnist") and (root_p / "mnist").is_dir():
        return "mnist", root
    if (
        dataset not in ("mnist", "fashion_mnist", "digits")
        and (root_p / "cifar-10-batches-py").is_dir()
    ):
        return "cifar10", root
    return None


def shrink(c, preset: str, cpu: dict | None = None, tiny: dict | None = None):
    """The ``cpu`` / ``tiny`` variant of a full config ``c`` (returned as is for ``''``).

    ``cpu`` / ``tiny``: dotted keys set after the generic shrinking (e.g.
    ``{"attack.steps": 200}``); ``tiny`` applies on top of ``cpu``.
    """
    check_preset(preset)
    if not preset:
        return c
    c.name += f"_{preset}"
    real = _real_data(c.data.name)
    if real:
        c.data.name, c.data.data_dir = real
        c.data.image_size = 16
        c.data.max_train = 2000
    else:
        c.data.name, c.data.data_dir, c.data.image_size = "digits", "", 0
        c.data.max_train = 0
    # IID on the small CPU data: 1,437 digits (or 2,000 real images) cannot give every client
    # of a Dirichlet(0.5) split the 15 images it needs, nor 50 for a local batch of 50
    c.data.partition = "iid"
    c.fl.rounds = min(int(c.fl.rounds), 2)
    if c.attack.name != "none":
        c.attack.restarts = 1
        if c.attack.mode == "fedavg":
            c.attack.rounds = (-1,)
            c.attack.clients = 1
        else:
            c.attack.clients = min(int(c.attack.clients), 2)
    for key, value in (cpu or {}).items():
        _set(c, key, value)
    _fit_clients(c)
    if preset == "tiny":
        if c.fl.rounds > 1 and c.attack.name != "none":
            c.fl.rounds = 1
        if c.attack.name != "none":
            c.attack.steps = min(int(c.attack.steps), 4)
            c.attack.chunk = 4
            c.attack.clients = 1
            if "cpa_steps" in c.attack:
                c.attack.cpa_steps = min(int(c.attack.cpa_steps), 4)
        for key, value in (tiny or {}).items():
            _set(c, key, value)
    if c.attack.name != "none":
        c.attack.chunk = min(int(c.attack.chunk), int(c.attack.steps))
    return c
