"""Fig. 19: iDLG on FedAvg updates over 20 rounds, one client per round (experiments/fed/dlg.sh):
CIFAR-10, cnn, 100 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1; L-BFGS lr 1.0, 300
iterations. iDLG's rule gives one label, the reference's single image; leakjax reconstructs the
client's whole local set, so its labels come from a label-count method (Geng et al.).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig19_idlg_fedavg_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig19_idlg_fedavg_100clients", "idlg", rounds=20, attack_every_round=True)
    c.attack.steps = 300
    c.attack.chunk = 100
    c.attack.lr = 1.0
    c.attack.labels = "geng"
    return shrink(c, preset, cpu={"attack.steps": 20, "attack.chunk": 10})
