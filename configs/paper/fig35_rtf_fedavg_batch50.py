"""Fig. 35: Robbing the Fed with local batch 50: CIFAR-10, resnet18 behind an imprint block of 100
bins (experiments/fed/rtf.sh), 100 clients (Dirichlet 0.5), batch 50, 1 local epoch, lr 0.1, 1
round; closed-form recovery from the imprint layer's update.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig35_rtf_fedavg_batch50.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig35_rtf_fedavg_batch50", "rtf", model="resnet18", clients=100, batch=50, epochs=1)
    c.model.imprint_bins = 100
    c.attack.steps = 1
    c.attack.chunk = 1
    # tiny: fc2 behind the same imprint block (resnet18's compile alone is ~2 min on 2 cores)
    return shrink(c, preset, cpu={}, tiny={"model.name": "fc2"})
