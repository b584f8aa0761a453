"""Fig. 41: Inverting Gradients on the gradient of one Tiny ImageNet image (64x64), 10 runs:
untrained cnn, cosine loss + TV 1e-6, Adam on signed gradients lr 0.1, 4000 iterations
(ig_single's settings, as Fig. 7).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig41_ig_gradient_tinyimagenet.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig41_ig_gradient_tinyimagenet", "ig", dataset="tiny_imagenet", model="cnn")
    c.attack.steps = 4000
    c.attack.chunk = 500
    c.attack.lr = 0.1
    c.attack.tv = 1e-6
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 300, "attack.chunk": 100})
