"""Fig. 22: CPA on FedAvg updates over 4 rounds, one client per round (experiments/fed/cpa.sh):
Tiny ImageNet, fc2 (256 hidden), 100 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1;
25000 Adam steps lr 1e-3, decor 1.47, T 12.4, TV 3.1. leakjax unmixes as many sources as the
client has training images, at most fc1's 256 outputs, so the data are capped at 20,000 training
images (~160 per client for training).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig22_cpa_fedavg_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig22_cpa_fedavg_100clients",
        "cpa",
        dataset="tiny_imagenet",
        model="fc2",
        rounds=4,
        attack_every_round=True,
    )
    c.data.max_train = 20000
    c.attack.steps = 25000
    c.attack.chunk = 2500
    c.attack.lr = 1e-3
    c.attack.decor = 1.47
    c.attack.temperature = 12.4
    c.attack.tv = 3.1
    return shrink(c, preset, cpu={"attack.steps": 1000, "attack.chunk": 500})
