"""Fig. 7: Inverting Gradients on the gradient of one CIFAR-10 image, 10 runs (experiments/grad/
ig.sh, ig_single): untrained cnn, cosine loss + TV 1e-6, Adam on signed gradients lr 0.1, 4000
iterations, label by iDLG's rule.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig07_ig_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig07_ig_gradient", "ig", model="cnn", batch=1)
    c.attack.steps = 4000
    c.attack.chunk = 500
    c.attack.lr = 0.1
    c.attack.tv = 1e-6
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 300, "attack.chunk": 100})
