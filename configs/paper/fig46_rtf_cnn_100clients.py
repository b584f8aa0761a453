"""Fig. 46: Robbing the Fed with the cnn as backbone: CIFAR-10, cnn behind an imprint block of 100
bins (experiments/fed/rtf.sh), 100 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1, 1
round; closed-form recovery from the imprint layer's update.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig46_rtf_cnn_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig46_rtf_cnn_100clients", "rtf", model="cnn", clients=100, batch=10, epochs=1)
    c.model.imprint_bins = 100
    c.attack.steps = 1
    c.attack.chunk = 1
    return shrink(c, preset, cpu={})
