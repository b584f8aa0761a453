"""Fig. 30: Robbing the Fed with 10 clients: CIFAR-10, resnet18 behind an imprint block of 100 bins
(experiments/fed/rtf.sh), 10 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1, 1 round;
closed-form recovery from the imprint layer's update.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig30_rtf_fedavg_10clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig30_rtf_fedavg_10clients", "rtf", model="resnet18", clients=10, batch=10, epochs=1
    )
    c.model.imprint_bins = 100
    c.attack.steps = 1
    c.attack.chunk = 1
    # tiny: fc2 behind the same imprint block (resnet18's compile alone is ~2 min on 2 cores)
    return shrink(c, preset, cpu={}, tiny={"model.name": "fc2"})
