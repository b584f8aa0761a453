"""Fig. 38: DLF with 5 local epochs: 100 clients (Dirichlet 0.5), batch 10, 5 local epochs. DLF
(experiments/fed/dlf.sh): CIFAR-100, cnn3, lr 0.004 (DLF's label-count restoration needs a small
lr), 1 round; 400 Adam steps at lr 0.1, label counts by Dimitrov et al., TV 2.0 (leakjax's
calibrated weight; the reference's 2e-4 is negligible here).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig38_dlf_fedavg_5epochs.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig38_dlf_fedavg_5epochs",
        "dlf",
        dataset="cifar100",
        model="cnn3",
        clients=100,
        batch=10,
        epochs=5,
        lr=0.004,
    )
    c.attack.steps = 400
    c.attack.chunk = 100
    c.attack.lr = 0.1
    c.attack.tv = 2.0
    c.attack.labels = "dimitrov"
    # tiny: 5 local epochs of one step each (data.max_train = 12 x clients: 10 training images
    # a client, batch 10), the figure's 5 epochs at half the simulated steps of the cpu share.
    tiny = {"data.max_train": 12 * 100}
    return shrink(c, preset, cpu={"attack.steps": 60, "attack.chunk": 30}, tiny=tiny)
