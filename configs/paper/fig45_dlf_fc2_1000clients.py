"""Fig. 45: DLF on the MLP with 1000 clients (~50 images each): 1000 clients (Dirichlet 0.5), batch
10, 2 local epochs. DLF (experiments/fed/dlf.sh): CIFAR-100, fc2, lr 0.004 (DLF's label-count
restoration needs a small lr), 1 round; 400 Adam steps at lr 0.1, label counts by Dimitrov et
al., TV 2.0 (leakjax's calibrated weight; the reference's 2e-4 is negligible here). fc2 is the
paper's MLP with one hidden layer of 256.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig45_dlf_fc2_1000clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig45_dlf_fc2_1000clients",
        "dlf",
        dataset="cifar100",
        model="fc2",
        clients=1000,
        batch=10,
        epochs=2,
        lr=0.004,
    )
    c.attack.steps = 400
    c.attack.chunk = 100
    c.attack.lr = 0.1
    c.attack.tv = 2.0
    c.attack.labels = "dimitrov"
    return shrink(c, preset, cpu={"attack.steps": 60, "attack.chunk": 30, "fl.num_clients": 100})
