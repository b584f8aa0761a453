"""Fig. 8: DLF on one client's update over 50 CIFAR-100 images, batch 10, 10 local epochs, lr 0.004
(fleak/dlf_attack.py): cnn3, 400 Adam steps (200 reference epochs x 2) at lr 0.1, label counts
restored from the update (Dimitrov et al.). DLF attacks model updates only, so the figure is one
FedAvg round of 10 IID clients holding 62 images each (50 for training). TV weight 2.0:
leakjax's calibrated value (BUILD_NOTES: the reference's 2e-4 is negligible next to leakjax's
lr-normalised matching term).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig08_dlf_50images.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig08_dlf_50images",
        "dlf",
        dataset="cifar100",
        model="cnn3",
        clients=10,
        epochs=10,
        lr=0.004,
    )
    c.data.partition = "iid"
    c.data.max_train = 625  # 62 images per client, 50 of them for training
    c.attack.steps = 400
    c.attack.chunk = 100
    c.attack.lr = 0.1
    c.attack.tv = 2.0
    c.attack.labels = "dimitrov"
    return shrink(
        c,
        preset,
        cpu={"data.max_train": 625, "fl.local_epochs": 2, "attack.steps": 60, "attack.chunk": 30},
    )
