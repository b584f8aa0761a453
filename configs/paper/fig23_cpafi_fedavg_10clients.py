"""Fig. 23: CPA + feature inversion on FedAvg updates over 10 rounds, one client per round
(experiments/fed/cpa.sh): Tiny ImageNet, untrained vgg16 (leakjax's "small" head, fc1 of 1024),
10 clients (Dirichlet 0.5), batch 50, 1 local epoch, lr 0.1; 25000 unmixing steps (lr 1e-3,
decor 5.3, T 7.7, nv 0.13, l1 5) and 25000 inversion steps (lr 0.1, TV 0.1). At most 1024
sources: the data are capped at 12,000 training images. CPU: the cnn (fc1 of 128).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig23_cpafi_fedavg_10clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig23_cpafi_fedavg_10clients",
        "cpa_fi",
        dataset="tiny_imagenet",
        model="vgg16",
        clients=10,
        batch=50,
        rounds=10,
        attack_every_round=True,
    )
    c.data.max_train = 12000
    c.attack.steps = 25000
    c.attack.chunk = 2500
    c.attack.cpa_steps = 25000
    c.attack.lr = 1e-3
    c.attack.fi_lr = 0.1
    c.attack.decor = 5.3
    c.attack.temperature = 7.7
    c.attack.tv = 0.1
    c.attack.nv = 0.13
    c.attack.l1 = 5.0
    c.attack.layer = "fc1"
    return shrink(
        c,
        preset,
        cpu={
            "model.name": "cnn",
            "data.max_train": 700,
            "attack.steps": 150,
            "attack.chunk": 75,
            "attack.cpa_steps": 1000,
        },
    )
