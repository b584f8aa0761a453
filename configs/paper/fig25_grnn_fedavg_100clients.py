"""Fig. 25: GRNN on FedAvg updates over 3 rounds, one client per round (the paper's text;
experiments/fed/grnn.sh): CIFAR-10, cnn, 100 clients (Dirichlet 0.5), batch 10, 1 local epoch,
lr 0.1; RMSprop lr 1e-4 on the generator, 1000 iterations, TV 1e-3, labels from the generator's
head.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig25_grnn_fedavg_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig25_grnn_fedavg_100clients", "grnn", rounds=3, attack_every_round=True)
    c.attack.steps = 1000
    c.attack.chunk = 250
    c.attack.lr = 1e-4
    c.attack.tv = 1e-3
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 100, "attack.chunk": 50})
