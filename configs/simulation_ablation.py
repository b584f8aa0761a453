"""Reference-faithful vs corrected client simulation (issue "paper study", BUILD_NOTES
"Reproduction"): the same FedAvg client updates attacked twice, once simulating the client
exactly (its lr, momentum, weight decay, minibatches, epochs: ``attack.simulation='exact'``)
and once as the PyTorch reference does (full-batch steps without momentum or weight decay:
``'reference'``; REFERENCE.md §5 item 5).

Presets ``<attack>-<simulation>``: ``ig-exact``, ``ig-reference``, ``dlf-exact``,
``dlf-reference``. FedAvg (seeded, hence identical across presets): 100 clients of the offline
digits data (~14 training images each), one round, batch 4, 2 local epochs (8 local steps),
lr 0.05, momentum 0.9, weight decay 5e-4; two clients' updates are attacked.

    C=configs/simulation_ablation.py
    leakjax-sweep --workdir=runs/simulation-ablation \\
        --configs="$C:ig-exact,$C:ig-reference,$C:dlf-exact,$C:dlf-reference"
"""

from leakjax.config import base_config

PRESETS = ("ig-exact", "ig-reference", "dlf-exact", "dlf-reference")


def get_config(preset: str = "ig-exact"):
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (use one of {PRESETS})")
    attack, simulation = preset.split("-")
    c = base_config()
    c.name = f"simulation_ablation_{attack}_{simulation}"
    c.data.name = "digits"
    c.data.partition = "iid"
    c.model.name = "cnn"
    c.fl.num_clients = 100
    c.fl.rounds = 1
    c.fl.local_epochs = 2
    c.fl.batch_size = 4
    c.fl.lr = 0.05
    c.fl.momentum = 0.9
    c.fl.weight_decay = 5e-4
    c.attack.mode = "fedavg"
    c.attack.clients = 2
    c.attack.simulation = simulation
    c.attack.chunk = 250
    if attack == "ig":
        c.attack.name = "ig"
        c.attack.steps = 1500
        c.attack.restarts = 2
        c.attack.tv = 1e-4
        c.attack.labels = "auto"
    else:
        c.attack.name = "dlf"
        c.attack.steps = 1000
        c.attack.restarts = 1
        c.attack.lr = 0.1
        c.attack.tv = 2.0
        c.attack.labels = "dimitrov"
    return c
