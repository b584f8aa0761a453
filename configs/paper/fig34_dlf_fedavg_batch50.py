"""Fig. 34: DLF with local batch 50: 100 clients (Dirichlet 0.5), batch 50, 1 local epoch. DLF
(experiments/fed/dlf.sh): CIFAR-100, cnn3, lr 0.004 (DLF's label-count restoration needs a small
lr), 1 round; 400 Adam steps at lr 0.1, label counts by Dimitrov et al., TV 2.0 (leakjax's
calibrated weight; the reference's 2e-4 is negligible here).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig34_dlf_fedavg_batch50.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig34_dlf_fedavg_batch50",
        "dlf",
        dataset="cifar100",
        model="cnn3",
        clients=100,
        batch=50,
        epochs=1,
        lr=0.004,
    )
    c.attack.steps = 400
    c.attack.chunk = 100
    c.attack.lr = 0.1
    c.attack.tv = 2.0
    c.attack.labels = "dimitrov"
    return shrink(c, preset, cpu={"attack.steps": 60, "attack.chunk": 30})
