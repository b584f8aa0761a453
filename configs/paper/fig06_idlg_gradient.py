"""Fig. 6: iDLG on the gradient of one CIFAR-10 image, 10 runs (experiments/grad/dlg.sh): untrained
cnn, L-BFGS lr 1.0, 300 iterations, the label read off the gradient (iDLG's rule).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig06_idlg_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig06_idlg_gradient", "idlg", model="cnn", batch=1)
    c.attack.steps = 300
    c.attack.chunk = 100
    c.attack.lr = 1.0
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 40, "attack.chunk": 20})
