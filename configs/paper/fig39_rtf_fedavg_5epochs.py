"""Fig. 39: Robbing the Fed with 5 local epochs: CIFAR-10, resnet18 behind an imprint block of 100
bins (experiments/fed/rtf.sh), 100 clients (Dirichlet 0.5), batch 10, 5 local epochs, lr 0.1, 1
round; closed-form recovery from the imprint layer's update.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig39_rtf_fedavg_5epochs.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("fig39_rtf_fedavg_5epochs", "rtf", model="resnet18", clients=100, batch=10, epochs=5)
    c.model.imprint_bins = 100
    c.attack.steps = 1
    c.attack.chunk = 1
    # tiny: the sigmoid LeNet behind the same imprint block, 5 local epochs of batch 10 on the
    # cpu preset's data (16 training images a client: 10 local SGD steps). Not fc2 as in figs
    # 26/30/35: five epochs are at least five local steps, and fc2 behind the block diverges
    # within 3-4 (lr 0.1, and still at lr 0.01), on real CIFAR-10 as on digits (the block
    # outputs ~45 in every pixel, unnormalized; benchmarks/rtf_divergence.py); resnet18, whose
    # BatchNorm trains behind the block, compiles for ~2 min on 2 cores. LeNet's sigmoids keep
    # its local losses ~2.3 over these steps (rtf_divergence --models=lenet --sizes=16).
    return shrink(c, preset, cpu={}, tiny={"model.name": "lenet"})
