"""Fig. 18: DLG on a FedAvg client's update after 2 rounds (experiments/fed/dlg.sh): CIFAR-10, cnn,
100 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1; L-BFGS lr 1.0, 300 iterations,
labels optimised jointly. leakjax reconstructs the client's whole local training set, simulating
its local training exactly.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig18_dlg_fedavg_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig18_dlg_fedavg_100clients", "dlg", rounds=2)
    c.attack.steps = 300
    c.attack.chunk = 100
    c.attack.lr = 1.0
    c.attack.labels = "optimize"
    return shrink(c, preset, cpu={"attack.steps": 20, "attack.chunk": 10})
