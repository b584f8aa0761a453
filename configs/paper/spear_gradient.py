"""SPEAR (Dimitrov et al., NeurIPS 2024, arXiv 2403.03945; not in the study's paper): the
gradient of a batch of 16 CIFAR-10 images on the untrained fc2 (one hidden Dense+ReLU layer of
256), recovered exactly from that layer's weight and bias gradients; 10 runs like Figs. 5-7.
The batch is the size SPEAR's paper recovers reliably (it needs batch <= 256, the layer's
width; the sampling cost grows with the batch). Fig. 9 (CPA) attacks the same model.

    leakjax-sweep --workdir=DIR --configs=configs/paper/spear_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("spear_gradient", "spear", model="fc2", batch=16)
    c.attack.steps = 1
    c.attack.chunk = 1
    return shrink(c, preset, tiny={"attack.batch_size": 8})  # tiny: seconds
