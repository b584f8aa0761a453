"""Fig. 5: DLG on the gradient of one CIFAR-10 image, 10 runs (the reference's
experiments/grad/dlg.sh, fleak/dlg_attack.py): untrained cnn, L-BFGS lr 1.0, 300 iterations,
labels optimised jointly.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig05_dlg_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig05_dlg_gradient", "dlg", model="cnn", batch=1)
    c.attack.steps = 300
    c.attack.chunk = 100
    c.attack.lr = 1.0
    c.attack.labels = "optimize"
    return shrink(c, preset, cpu={"attack.steps": 40, "attack.chunk": 20})
