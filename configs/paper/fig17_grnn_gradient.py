"""Fig. 17: GRNN on the gradient of 4 CIFAR-100 images, 10 runs (experiments/grad/grnn.sh, the
unnormalised run the figure shows): untrained cnn, RMSprop lr 1e-4 on the generator, 1000
iterations, TV 1e-3, labels from the generator's head.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig17_grnn_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig17_grnn_gradient", "grnn", dataset="cifar100", model="cnn", batch=4)
    c.data.normalize = "none"
    c.attack.steps = 1000
    c.attack.chunk = 250
    c.attack.lr = 1e-4
    c.attack.tv = 1e-3
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 100, "attack.chunk": 50})
