"""R-GAP (Zhu and Blaschko, ICLR 2021, arXiv 2010.07733; not in the study's paper): the gradient
of one CIFAR-10 image on the untrained rgap_cnn (strided convs + LeakyReLU(0.2), the kind of
network R-GAP inverts in closed form), 10 runs like Figs. 5-7; one step (closed form), no labels
needed.

    leakjax-sweep --workdir=DIR --configs=configs/paper/rgap_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("rgap_gradient", "rgap", model="rgap_cnn", batch=1)
    c.attack.steps = 1
    c.attack.chunk = 1
    return shrink(c, preset)
