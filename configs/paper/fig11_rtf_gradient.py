"""Fig. 11 (caption not in the paper's text; the reference's experiments/grad/rtf.sh and
fleak/rtf_attack.py): Robbing the Fed on the gradient of 64 CIFAR-10 images, the cnn behind an
imprint block of 100 bins, closed-form recovery (one step).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig11_rtf_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig11_rtf_gradient", "rtf", model="cnn", batch=64)
    c.model.imprint_bins = 100
    c.attack.clients = 1
    c.attack.steps = 1
    c.attack.chunk = 1
    return shrink(c, preset, cpu={"fl.num_clients": 10})
