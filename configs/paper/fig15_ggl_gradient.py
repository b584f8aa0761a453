"""Fig. 15: GGL on the gradient of one CIFAR-10 image, 10 runs (experiments/grad/ggl.sh): untrained
resnet18, CMA-ES over the 128-d latent of a pretrained generator (set $LEAKJAX_GGL_GENERATOR to
a `python -m leakjax.train_generator` checkpoint; without it the generator is untrained and the
name says so), label by iDLG's rule. The reference's budget is 25000 objective evaluations; here
1389 generations of the default population (18).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig15_ggl_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import ggl_generator, gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig15_ggl_gradient", "ggl", model="resnet18", batch=1)
    ggl_generator(c)
    c.attack.steps = 1389
    c.attack.chunk = 463
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"model.name": "cnn", "attack.steps": 40, "attack.chunk": 20})
