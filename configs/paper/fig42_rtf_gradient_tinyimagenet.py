"""Fig. 42: Robbing the Fed on the gradient of 64 Tiny ImageNet images: resnet18 behind an imprint
block of 100 bins (fleak/rtf_attack.py's batch of 64), closed-form recovery.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig42_rtf_gradient_tinyimagenet.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient(
        "fig42_rtf_gradient_tinyimagenet",
        "rtf",
        dataset="tiny_imagenet",
        model="resnet18",
        batch=64,
    )
    c.model.imprint_bins = 100
    c.attack.clients = 1
    c.attack.steps = 1
    c.attack.chunk = 1
    return shrink(c, preset, cpu={"fl.num_clients": 10})
