"""Fig. 48 (ResNet18): test accuracy of FedAvg without an attack (``attack.name='none'``) over 100
rounds on CIFAR-10 (the reference's experiments/fed_main.sh: 10 clients, Dirichlet 0.5, 2 local
epochs, batch 50, lr 0.1 x0.95 per round, momentum 0.5; no data augmentation). A sweep over the
four fig48_* files draws the figure: fl_accuracy.png, one line per model.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig48_fl_accuracy_resnet18.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESNET18_TINY, fl_only, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fl_only("fig48_fl_accuracy_resnet18", "resnet18")
    return shrink(c, preset, cpu={"fl.rounds": 8}, tiny=RESNET18_TINY)
